"""What one MLflow request costs the server, by kind: ``python tests/bench/mlflow_requests.py`` (not a test).

Starts the embedded ``mlflow server`` (SQLite, local artifacts) on a free port, makes a run, a
registered model and a version, then sends ``--calls`` requests of each kind a pipeline stage
sends and prints the server's CPU (its process tree) and this client's CPU per request. Issue 26:
the stages' requests are counted per pair by ``pair_overhead.py --profile``; this says which of
them are worth cutting (registry and tracking writes and reads cost several times an artifact
transfer, and MLflow's handlers read the registered model after each registry write to decide on
prompt webhooks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="requests of each kind")
    parser.add_argument("--http-server", choices=("uvicorn", "gunicorn"), default="gunicorn", help="what serves MLflow")
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import mlflow
    import requests
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from modelyard.deploy.rollout.mlflow_server import start_mlflow_server
    from tests.bench.pair_overhead import tree_cpu_s

    with (
        tempfile.TemporaryDirectory(prefix="modelyard-requests-") as tmp,
        start_mlflow_server(Path(tmp) / "mlflow", http_server=args.http_server) as server,
    ):
        mlflow.set_tracking_uri(server.url)
        client = mlflow.MlflowClient(server.url, server.url)
        registry = client._get_registry_client()  # the calls as modelyard sends them: no client-side prompt check
        run = client.create_run(client.create_experiment("requests"))
        registry.create_registered_model("m")
        version = registry.create_model_version("m", run.info.artifact_uri, run.info.run_id).version
        repo = get_artifact_repository(run.info.artifact_uri)
        payload = Path(tmp) / "file.json"
        payload.write_text("x" * 2000)
        pid = server.process.pid if server.process else None
        kinds: list[tuple[str, Callable[[int], Any]]] = [
            ("GET registered-models/get", lambda i: client.get_registered_model("m")),
            ("POST model-versions/set-tag", lambda i: registry.set_model_version_tag("m", version, f"k{i % 9}", "v")),
            ("GET model-versions/get", lambda i: registry.get_model_version("m", version)),
            ("GET runs/get", lambda i: client.get_run(run.info.run_id)),
            ("POST runs/set-tag", lambda i: client.set_tag(run.info.run_id, f"k{i % 10}", str(i))),
            ("PUT artifact (2 kB)", lambda i: repo.log_artifact(str(payload), f"d{i % 5}")),
            ("GET artifact listing", lambda i: repo.list_artifacts("d1")),
            ("GET artifact (2 kB)", lambda i: repo._download_file("d1/file.json", str(Path(tmp) / "got.json"))),
            ("GET /health", lambda i: requests.get(f"{server.url}/health", timeout=10)),
        ]
        time.sleep(2)  # the server's start-up work settles
        print(f"{args.calls} requests of each kind, one client thread; CPU per request in ms")
        print("| request | server CPU ms | client CPU ms |\n|---|---|---|")
        for label, call in kinds:
            start_server, start_client = tree_cpu_s(pid), time.process_time()
            for i in range(args.calls):
                call(i)
            server_ms = (tree_cpu_s(pid) - start_server) / args.calls * 1000
            client_ms = (time.process_time() - start_client) / args.calls * 1000
            print(f"| `{label}` | {server_ms:.2f} | {client_ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
