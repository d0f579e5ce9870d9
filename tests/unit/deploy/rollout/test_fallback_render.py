"""A deploy's table says which regions a pooled model serves (ADR 0015), brackets and all."""

from __future__ import annotations

from rich.console import Console

from modelyard.deploy.rollout.render import render_deploy
from modelyard.deploy.rollout.staged_deploy import DeployResult


def test_the_deploy_table_names_each_fallback_and_its_pooled_model() -> None:
    result = DeployResult(
        release="local", target="local", strategy="rolling", outcome="deployed", plan_digest="sha256:abc",
        previous_plan_digest=None, versions={"eta/surabaya": {"primary": "3"}},
        fallbacks={"eta/surabaya": "eta-country-id v3 (group [id])"},
    )  # fmt: skip
    console = Console(record=True, width=200)
    console.print(render_deploy(result))

    text = console.export_text()
    assert "fallback: no champion of its own, served by eta-country-id v3 (group [id])" in text
    assert DeployResult.model_validate_json(result.model_dump_json()).fallbacks == result.fallbacks
