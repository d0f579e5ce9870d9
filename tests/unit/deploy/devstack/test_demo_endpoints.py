"""The demo's last lines: the URLs in a panel, and a curl call that can be copied as printed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from modelyard.deploy.devstack.demo import print_endpoints
from modelyard.deploy.devstack.stack import StackSettings

CURL = (
    "curl -s -X POST http://127.0.0.1:8000/v1/predict/driver_acceptance/jakarta -H 'Content-Type: application/json' "
    """-d '{"pickup_distance_km":2.5,"pickup_area":"central","tags":["[bold]",1],"""
    """"event_time":"2026-12-06T15:21:47+00:00"}'"""
)


def _printed(width: int) -> str:
    console = Console(record=True, width=width, color_system=None)
    settings = StackSettings(Path("modelyard.yaml"), Path(".modelyard"), "127.0.0.1", 8080, 5000, 8000)
    print_endpoints(console, settings, CURL)
    return console.export_text()


def test_the_curl_call_is_one_unwrapped_line_with_its_brackets() -> None:
    text = _printed(width=80)  # narrower than the command
    assert CURL in text.splitlines()  # one line: no panel border, no wrap, "[bold]" not read as markup
    assert "http://127.0.0.1:8080" in text
    assert "modelyard down" in text


def test_the_urls_stay_in_the_panel_and_the_command_outside_it() -> None:
    lines = _printed(width=200).splitlines()
    panel = [line for line in lines if line.startswith(("╭", "│", "╰"))]
    assert any("MLflow UI    http://127.0.0.1:5000" in line for line in panel)
    assert not any("curl" in line for line in panel)
