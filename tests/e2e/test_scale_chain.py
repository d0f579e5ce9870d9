"""Fifty pairs through the real scheduler: every stage green, every pair served by its champion (or its pooled one).

The scale benchmark's config writer and stack (``tests/bench/scale.py``) at 25 generated regions
x 2 families with few rows each, on its own stack (free ports, temporary home). Assertions are
on outcomes only: the time it takes belongs to ``make bench-scale``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from e2e_stack import RESULTS

from modelyard.deploy.devstack.chain import ChainState, trigger_chain
from modelyard.deploy.devstack.endpoint import sample_record
from modelyard.deploy.devstack.progress import follow_chain
from modelyard.deploy.devstack.stack import CHAIN_DAG_IDS
from modelyard.promotion.status import collect_status
from tests.bench.scale import ScaleStack, region_names, scale_stack, stage_runs

PAIRS = 50
ROWS = 400
CHAIN_TIMEOUT = 4 * 3600  # no speed is asserted; this only bounds a hung chain

pytestmark = pytest.mark.timeout(CHAIN_TIMEOUT + 1200)


@dataclass
class ScaleChain:
    stack: ScaleStack
    since: str
    state: ChainState


@pytest.fixture(scope="module")
def scale_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleChain]:
    """The 50-pair chain, followed to its end once; the stack stops (logs kept) after the module."""
    from rich.console import Console

    home = tmp_path_factory.mktemp("scale-chain")
    with scale_stack(home, PAIRS, ROWS, logs_to=RESULTS / "scale-chain-logs") as stack:
        output = io.StringIO()
        since = trigger_chain(stack.api, note="e2e scale chain")
        try:
            state = follow_chain(stack.api, since, Console(file=output, width=140), timeout=CHAIN_TIMEOUT)
        finally:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / "scale-chain.txt").write_text(output.getvalue())
        yield ScaleChain(stack, since, state)


def test_the_config_has_fifty_pairs_of_generated_regions(scale_chain: ScaleChain) -> None:
    config = scale_chain.stack.config
    assert len(config.pairs()) == PAIRS
    assert [r.name for r in config.regions] == region_names(PAIRS // 2)


def test_every_run_of_every_stage_succeeded(scale_chain: ScaleChain) -> None:
    for dag_id in CHAIN_DAG_IDS:
        runs = stage_runs(scale_chain.stack.api, dag_id, scale_chain.since)
        assert runs, f"no run of {dag_id}"
        assert {run["state"] for run in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]


def _serving_versions(scale_chain: ScaleChain) -> dict[tuple[str, str], tuple[str, str]]:
    """Per pair: the model and version that should answer it, its champion or its group's pooled champion.

    The generated regions form country groups, so the chain trains and promotes pooled models too;
    a region whose own first model loses to its group's pooled champion (the graduation gate, ADR
    0015) is served by the pooled model.
    """
    stack = scale_chain.stack
    statuses = collect_status(stack.config, tracking_uri=stack.settings.mlflow_url)
    expected = {}
    for status in statuses:
        if status.champion:
            expected[(status.family, status.region)] = (status.model_name, str(status.champion.version))
        elif status.fallback:
            expected[(status.family, status.region)] = (status.fallback.model_name, str(status.fallback.version))
    return expected


def test_every_pair_is_served_by_its_champion(scale_chain: ScaleChain) -> None:
    stack = scale_chain.stack
    serving = _serving_versions(scale_chain)
    missing = sorted(set(stack.config.pairs()) - set(serving))
    assert not missing, f"neither a champion nor a pooled fallback for {missing}"
    champions = {pair: version for pair, (_, version) in serving.items()}
    answers: dict[tuple[str, str], Any] = {}
    with httpx.Client(base_url=stack.settings.serving_url, timeout=30) as client:
        for family, region in stack.config.pairs():
            response = client.post(f"/v1/predict/{family}/{region}", json=sample_record(stack.config, family))
            answers[(family, region)] = response.json() if response.status_code == 200 else response.text
    wrong = {
        pair: answer
        for pair, answer in answers.items()
        if not isinstance(answer, dict) or str(answer.get("version")) != champions[pair]
    }
    assert not wrong, f"{len(wrong)} of {PAIRS} pairs not answered by their champion: {dict(list(wrong.items())[:5])}"
    for answer in answers.values():
        assert len(answer["predictions"]) == 1


def test_the_serving_process_holds_every_champion_and_is_ready(scale_chain: ScaleChain) -> None:
    readyz = httpx.get(f"{scale_chain.stack.settings.serving_url}/readyz", timeout=30).json()
    assert readyz["ready"] is True
    models = len(set(_serving_versions(scale_chain).values()))  # a pooled model serving two regions loads once
    assert readyz["progress"] == f"ready {models}/{models}"
