"""``python -m modelyard.deploy.serving.check`` (the chart's ``helm test`` pod) against stand-in servers:
each way a server can fall short is one FAIL line naming what was found, and exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from modelyard.deploy.serving.check import main
from modelyard.deploy.serving.plan import parse_plan
from tests.stand_in import Handler, stand_in

PLAN = {
    "version": 1,
    "services": [
        {"family": f, "region": "jakarta", "variants": [{"name": "c", "model_uri": f"models:/{f}/1", "weight": 100}]}
        for f in ("fare", "eta")
    ],
}
DIGEST = parse_plan(PLAN).digest()


class _Server(Handler):
    """Answers /readyz with ``readyz`` (status, body) and /v1/models/... with ``models`` (path -> status)."""

    readyz: ClassVar[tuple[int, Any]] = (200, {})
    models: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        if self.path == "/readyz":
            status, body = type(self).readyz
            self.answer(status, body if isinstance(body, bytes) else json.dumps(body).encode())
        else:
            self.answer(type(self).models.get(self.path, 404), b'{"error": "model_missing"}')


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], readyz: tuple[int, Any], models: dict[str, int]
) -> tuple[int, str]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    _Server.readyz, _Server.models = readyz, models
    with stand_in(_Server) as url:
        code = main(["--url", url, "--plan", str(plan), "--timeout", "5"])
    out = capsys.readouterr()
    return code, (out.out + out.err).replace(url, "URL")


READY = {"ready": True, "progress": "ready 2/2", "plan": {"active_digest": DIGEST}}
BOTH = {"/v1/models/fare/jakarta": 200, "/v1/models/eta/jakarta": 200}


def test_a_ready_server_on_the_plan_passes_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(tmp_path, capsys, (200, READY), BOTH)
    assert code == 0, text
    assert f"ok   plan {DIGEST} is the one served" in text
    assert "ok   eta/jakarta answers /v1/models/eta/jakarta" in text


@pytest.mark.parametrize(
    ("readyz", "models", "expected"),
    [
        ((503, {"ready": False, "progress": "loading 1/2"}), BOTH, "FAIL GET URL/readyz: 503, not ready (loading 1/2)"),
        ((200, b"<html>"), BOTH, "FAIL GET URL/readyz: 200 with a body that is not JSON"),
        (
            (200, {**READY, "plan": {"active_digest": "sha256:0ld"}}),
            BOTH,
            f"FAIL URL serves plan sha256:0ld, not {DIGEST}",
        ),
        ((200, READY), {"/v1/models/fare/jakarta": 200}, "FAIL GET URL/v1/models/eta/jakarta: 404, expected 200"),
    ],
)
def test_each_shortfall_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], readyz: tuple[int, Any], models: dict[str, int], expected: str
) -> None:
    code, text = _run(tmp_path, capsys, readyz, models)
    assert code == 1, text
    assert expected in text


def test_a_plan_that_cannot_be_read_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://127.0.0.1:1", "--plan", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read plan file" in capsys.readouterr().err


def test_a_server_that_does_not_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    assert main(["--url", "http://127.0.0.1:1", "--plan", str(plan), "--timeout", "2"]) == 1
    assert "FAIL GET http://127.0.0.1:1/readyz: no answer" in capsys.readouterr().err
