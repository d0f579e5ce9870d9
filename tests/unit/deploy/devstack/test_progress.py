"""The demo's per-pair grid reads chunk tasks (ADR 0008): their outcomes once finished, their labels before."""

from __future__ import annotations

from typing import Any

import httpx
from rich.console import Console

from modelyard.deploy.devstack.chain import ChainState, poll_chain
from modelyard.deploy.devstack.progress import labelled_pairs, pair_states, render_progress
from modelyard.deploy.devstack.stack import AirflowApi


def chunk_ti(state: str, label: str, map_index: int = 0) -> dict[str, Any]:
    return {
        "dag_id": "training", "dag_run_id": "r1", "task_id": "train", "map_index": map_index,
        "try_number": 1, "state": state, "rendered_map_index": label,
    }  # fmt: skip


def test_a_running_chunk_shows_the_pairs_its_label_names() -> None:
    ti = chunk_ti("running", "eta/jakarta, eta/manila, … (+10)")
    assert labelled_pairs(ti["rendered_map_index"]) == ["eta/jakarta", "eta/manila"]
    assert pair_states(ChainState(), ti) == [("eta/jakarta", "running"), ("eta/manila", "running")]


def test_a_finished_chunk_shows_every_pair_with_its_own_outcome() -> None:
    ti = chunk_ti("failed", "eta/jakarta, … (+2)")
    outcomes = [
        {"family": "eta", "region": "jakarta", "status": "registered", "ok": True},
        {"family": "eta", "region": "manila", "status": "unchanged", "ok": True},
        {"family": "eta", "region": "JKT", "status": "failed", "ok": False},
    ]
    state = ChainState(
        runs={"training": [{"dag_run_id": "r1", "state": "failed", "run_after": "x"}]},
        tasks={"r1": [ti]},
        outcomes={("training", "r1", "train", 0, 1): outcomes},
    )
    assert pair_states(state, ti) == [("eta/jakarta", "registered"), ("eta/manila", "unchanged"), ("eta/JKT", "failed")]
    console = Console(width=200, record=True)
    console.print(render_progress(state))
    text = console.export_text()
    for region in ("jakarta", "manila", "JKT"):
        assert region in text, text
    header = next(line for line in text.splitlines() if line.startswith("┃") and "family" in line)
    columns = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert columns == ["family", "region", "training"], header  # housekeeping handles no pairs: no column
    assert "housekeeping" in text  # the stages table lists every DAG


class CountingApi:
    """The REST calls poll_chain makes, answered from a dict of runs; counts the task-instance reads."""

    def __init__(self) -> None:
        self.runs: dict[str, list[dict[str, Any]]] = {"training": []}
        self.task_reads: list[str] = []

    def dag_runs(self, dag_id: str, since: str | None = None) -> list[dict[str, Any]]:
        return [dict(run) for run in self.runs.get(dag_id, [])]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        self.task_reads.append(run_id)
        return [{**chunk_ti("success", "eta/jakarta"), "dag_run_id": run_id}]

    def queued_asset_events(self, dag_id: str) -> int:
        return 0

    def pair_outcomes(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        return [{"family": "eta", "region": "jakarta", "status": "registered", "ok": True}]


def test_a_poll_reads_the_tasks_of_a_finished_run_again_only_when_the_run_changed() -> None:
    api = CountingApi()
    api.runs["training"] = [{"dag_run_id": "r1", "state": "running", "run_after": "a", "end_date": None}]
    state = poll_chain(api, "since")  # type: ignore[arg-type]
    api.runs["training"][0].update(state="success", end_date="t1")
    state = poll_chain(api, "since", state)  # type: ignore[arg-type]
    assert api.task_reads == ["r1", "r1"]  # running, then seen finished: read both times
    for _ in range(3):
        state = poll_chain(api, "since", state)  # type: ignore[arg-type]
    assert api.task_reads == ["r1", "r1"]  # finished and unchanged: kept
    assert state.tasks["r1"][0]["state"] == "success"
    api.runs["training"][0].update(state="success", end_date="t2")  # cleared and run again
    poll_chain(api, "since", state)  # type: ignore[arg-type]
    assert api.task_reads == ["r1", "r1", "r1"]


def test_the_airflow_client_logs_in_once_and_keeps_one_http_client() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        assert request.headers["Authorization"] == "Bearer t"
        return httpx.Response(200, json={"dag_runs": []})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    api = AirflowApi("http://airflow", _client=client)
    api.dag_runs("training")
    api.dag_runs("promotion")
    assert calls == ["/auth/token", "/api/v2/dags/training/dagRuns", "/api/v2/dags/promotion/dagRuns"]
    assert api.client is client
    api.close()
    assert client.is_closed


def test_off_a_terminal_the_live_view_ends_its_line_before_what_follows(monkeypatch: Any) -> None:
    import io

    from modelyard.deploy.devstack import progress

    monkeypatch.setattr(progress, "POLL_SECONDS", 0.0)
    api = CountingApi()  # nothing runs: the chain settles after QUIET_POLLS polls
    output = io.StringIO()
    console = Console(file=output, width=120)

    progress.follow_chain(api, "since", console, extra_view=lambda: "background load: 3 served")  # type: ignore[arg-type]
    console.print("festival in jakarta: what serves now")

    assert "background load: 3 served\nfestival in jakarta" in output.getvalue()  # they shared a line
