"""Batch scoring benchmark: ``python tests/bench/batch_scoring.py [--rows N]`` (``make bench``). Not a test.

One xgboost classifier (200 trees) on the demo's ``driver_acceptance`` feature spec (Jakarta's
calendar, stored with the model as training stores it) is registered on a temporary real MLflow
server as the champion of ``driver_acceptance/jakarta``. A file of ``--rows`` raw rows (default
1,000,000: booking id, event time, raw columns, the demand index) is scored twice:

* **modelyard**: ``modelyard.deploy.batch.scoring.score_pair`` (the ``modelyard score`` command)
  reading it in chunks of ``--chunk-rows``, featurising with the version's spec, predicting as
  the server does, publishing Parquet;
* **mlflow.pyfunc + pandas**: what a user writes without it: ``pandas.read_*`` the whole file,
  featurise with the same spec, ``mlflow.pyfunc.load_model(...).predict`` on the frame,
  ``DataFrame.to_parquet``.

Reported: rows/s of each (wall time, model load included for both), their ratio, and this
process's peak RSS after each (modelyard runs first, so its peak is its own).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAMILY, REGION = "driver_acceptance", "jakarta"


def write_input(path: Path, fitted: Any, rows: int, seed: int = 7) -> None:
    """``rows`` raw rows for ``fitted`` (time at +07:00, raw numbers, requested aggregates), as CSV or Parquet."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, 90 * 86400, rows)
    times = pd.Timestamp("2026-03-01", tz="Asia/Jakarta") + pd.to_timedelta(seconds, unit="s")
    columns: dict[str, Any] = {"booking_id": np.char.add("b", np.arange(rows).astype(str))}
    for name in fitted.raw_inputs:
        kind = fitted.spec.columns.get(name)
        if name == fitted.spec.time_column:
            columns[name] = times if path.suffix == ".parquet" else times.strftime("%Y-%m-%dT%H:%M:%S+07:00")
        elif kind in ("int", "bool"):
            columns[name] = rng.integers(0, 2 if kind == "bool" else 6, rows)
        else:
            columns[name] = rng.uniform(0, 5, rows)
    for name in fitted.requested:
        columns[name] = rng.uniform(0, 3, rows)
    frame = pd.DataFrame(columns)
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False)


def bench_modelyard(config: Any, source: Path, out: Path, tracking_uri: str, chunk_rows: int) -> dict[str, Any]:
    from modelyard.deploy.batch.model import registry_client
    from modelyard.deploy.batch.scoring import ScoreRequest, score_pair

    request = ScoreRequest(input=str(source), out=str(out), chunk_rows=chunk_rows)
    started = time.perf_counter()
    result = score_pair(config, FAMILY, REGION, request, registry_client(tracking_uri))
    seconds = time.perf_counter() - started
    assert result.status == "scored", result.summary()
    return {"seconds": seconds, "rows": result.provenance.rows, "chunks": result.chunks, "peak_rss_mb": _peak_mb()}


def bench_pyfunc(uri: str, fitted: Any, source: Path, out: Path) -> dict[str, Any]:
    """pandas reads the file, the same spec featurises it, ``mlflow.pyfunc`` predicts, pandas writes Parquet."""
    import mlflow
    import pandas as pd

    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(uri)
    frame = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    columns = {name: frame[name].to_numpy() for name in [*fitted.raw_inputs, *fitted.requested]}
    time_column = fitted.spec.time_column
    columns[time_column] = pd.to_datetime(frame[time_column], utc=True).dt.tz_localize(None).to_numpy()
    features = pd.DataFrame(fitted.transform(columns), columns=fitted.names)
    predictions = model.predict(features)
    pd.DataFrame({"booking_id": frame["booking_id"], "prediction": predictions}).to_parquet(out)
    return {"seconds": time.perf_counter() - started, "rows": len(frame), "peak_rss_mb": _peak_mb()}


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from serving import demo_fitted_spec, register_raw_xgboost  # this folder is the script's sys.path[0]

    from modelyard.core.config import load_config
    from modelyard.deploy.rollout.mlflow_server import start_mlflow_server

    environ = {
        "MODELYARD_STORAGE__ROOT": str(workdir / "data"),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "bench-{family}-{region}",
    }
    config = load_config(REPO / "modelyard.yaml", environ=environ)
    fitted = demo_fitted_spec()
    source = workdir / f"bookings.{options.format}"
    write_input(source, fitted, options.rows)
    with start_mlflow_server(workdir / "mlflow") as server:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        name = config.pair_view(FAMILY, REGION).model_name
        uri, _, _ = register_raw_xgboost(name, n_trees=options.trees)
        MlflowClient(server.url).set_registered_model_alias(name, "champion", uri.rsplit("/", 1)[1])
        ours = bench_modelyard(config, source, workdir / "modelyard.parquet", server.url, options.chunk_rows)
        theirs = bench_pyfunc(uri, fitted, source, workdir / "pyfunc.parquet")
    return {
        "rows": options.rows,
        "format": options.format,
        "chunk_rows": options.chunk_rows,
        "trees": options.trees,
        "modelyard": {**ours, "rows_per_s": round(ours["rows"] / ours["seconds"])},
        "pyfunc_pandas": {**theirs, "rows_per_s": round(theirs["rows"] / theirs["seconds"])},
        "ratio": round(theirs["seconds"] / ours["seconds"], 2),
    }


def render(results: dict[str, Any]) -> str:
    ours, theirs = results["modelyard"], results["pyfunc_pandas"]
    return "\n".join(
        [
            f"batch scoring, {results['rows']:,} rows ({results['format']}), {results['trees']} trees, "
            f"chunks of {results['chunk_rows']:,} rows",
            f"  modelyard score          {ours['rows_per_s']:>12,} rows/s  {ours['seconds']:7.1f} s  "
            f"peak RSS {ours['peak_rss_mb']:,.0f} MB",
            f"  mlflow.pyfunc + pandas   {theirs['rows_per_s']:>12,} rows/s  {theirs['seconds']:7.1f} s  "
            f"peak RSS {theirs['peak_rss_mb']:,.0f} MB",
            f"  ratio (time pyfunc / time modelyard): {results['ratio']}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = argparse.ArgumentParser(prog="python tests/bench/batch_scoring.py", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the input file")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-batch-") as folder:
        results = run(options, Path(folder))
    print(render(results))
    if options.json is not None:
        options.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
