"""``modelyard status`` at 120 columns: every line fits, no name breaks mid-word, user text keeps its brackets;
``--json``: every field, as valid JSON."""

from __future__ import annotations

import json

from rich.console import Console

from modelyard.promotion.render import render_status
from modelyard.promotion.status import Fallback, PairStatus, VersionInfo, failed_gates, status_record

METRICS = {"holdout_auc": 0.8123, "holdout_logloss": 0.4567, "holdout_brier": 0.1234, "baseline_holdout_auc": 0.8}
DRIFT = "drifted: pickup_distance_km psi=0.412, driver_acceptance_rate psi=0.3, predictions psi=0.5"


def rendered(statuses: list[PairStatus], width: int = 120) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_status(statuses))
    return console.export_text()


def fleet() -> list[PairStatus]:
    champion = VersionInfo(
        "12", METRICS, champion_since="2026-12-04T10:11:12+00:00", drift="drifted", drift_summary=DRIFT
    )
    challenger = VersionInfo("14", outcome="awaiting-approval", rolled_back_at="2026-12-03T00:00:00+00:00")
    rows = [
        PairStatus("driver_acceptance", region, f"m-{region}", champion, challenger, VersionInfo("11"))
        for region in ("jakarta", "ho_chi_minh_city", "singapore")
    ]
    rows.append(PairStatus("pickup_eta", "bangkok", "m-bangkok", None, VersionInfo("1", outcome="rejected"), None))
    return rows


def test_every_line_fits_120_columns_and_no_name_is_split() -> None:
    text = rendered(fleet())
    assert max(len(line) for line in text.splitlines()) <= 120, text
    for name in ("driver_acceptance", "ho_chi_minh_city", "pickup_distance_km", "driver_acceptance_rate", "v14"):
        assert name in text, text
    assert "2026-12-04 10:11" in text
    words = text.split()
    assert "awaiting" in words
    assert "approval" in words  # wrapped between words, not "awaiting-appr/oval"
    assert "baseline_auc=0.800" in text


def test_a_pair_is_a_few_lines_with_one_metric_a_line() -> None:
    text = rendered(fleet()[:1])
    for metric in ("auc=0.812", "logloss=0.457", "brier=0.123", "baseline_auc=0.800"):
        assert sum(metric in line for line in text.splitlines()) == 1, text
    assert not any("auc=0.812" in line and "logloss" in line for line in text.splitlines()), text
    assert len([line for line in text.splitlines() if line.strip()]) <= 8, text


def test_brackets_in_recorded_text_are_printed_as_they_are() -> None:
    champion = VersionInfo("3", drift="drifted", drift_summary="drifted: [bold]x psi=0.9")
    text = rendered([PairStatus("f", "r", "m", champion, VersionInfo("4", outcome="rejected"), None)])
    assert "[bold]x" in text, text


def test_a_challenger_that_is_the_champion_says_so_and_no_challenger_is_a_dash() -> None:
    champion = VersionInfo("5", METRICS)
    text = rendered(
        [PairStatus("f", "r", "m", champion, champion, None), PairStatus("f", "s", "m", champion, None, None)]
    )
    assert "v5 (is champion)" in text
    assert "awaiting approval" not in text


def test_a_rejected_challenger_names_the_gates_that_failed_one_a_line() -> None:
    # What a data scientist asks first on seeing "v2 rejected": which gate? (the figures are in MLflow)
    tags = {"promotion.outcome": "rejected", "promotion.gates": "11 passed, 2 failed: latency, slice:auc__[night]"}
    challenger = VersionInfo("2", outcome="rejected", failed_gates=failed_gates(tags["promotion.gates"]))
    text = rendered([PairStatus("f", "r", "m", VersionInfo("1", METRICS), challenger, None)])
    lines = [line.split()[-1] for line in text.splitlines() if "latency" in line or "slice:" in line]
    assert lines == ["latency", "slice:auc__[night]"], text
    assert failed_gates("13 passed") == ()
    assert failed_gates(None) == ()


def test_the_json_of_a_status_is_every_field_and_what_serves_the_region() -> None:
    champion, pooled = fleet()[0], VersionInfo("3", {"holdout_auc": float("nan")}, drift="stable")
    fallback = Fallback("id", "eta-id", "3", pooled)
    served = PairStatus("pickup_eta", "surabaya", "eta-surabaya", None, None, None, fallback)
    records = json.loads(json.dumps([status_record(champion), status_record(served)], allow_nan=False))
    assert records[0]["champion"]["metrics"] == METRICS
    assert records[0]["champion"]["drift_summary"] == DRIFT
    assert records[0]["challenger"]["outcome"] == "awaiting-approval"
    assert records[0]["previous"]["version"] == "11"
    assert records[0]["serving"] == {"model_name": "m-jakarta", "version": "12"}
    assert records[1]["fallback"]["group"] == "id"
    assert records[1]["fallback"]["info"]["metrics"] == {"holdout_auc": None}  # NaN is not JSON
    assert records[1]["serving"] == {"model_name": "eta-id", "version": "3"}
    nothing = status_record(PairStatus("f", "r", "m", None, VersionInfo("1", outcome="rejected"), None))
    assert nothing["serving"] is None
