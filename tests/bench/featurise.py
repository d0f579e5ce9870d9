"""Raw-field featurisation cost per request: ``python tests/bench/featurise.py``. Not a test.

The demo's ``driver_acceptance`` feature spec (fitted for Jakarta, with its festival calendar)
turns raw records into the model matrix as the server does (``deploy.serving.features``);
reported: microseconds per 1-row and per 1,000-row request, best of several rounds, against
the precomputed path on the same rows (``InputSchema.to_matrix``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 7


def best_us(fn: Callable[[], Any], calls: int) -> float:
    """Best-of-``ROUNDS`` mean process CPU microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


def main() -> int:
    from serving import demo_fitted_spec, raw_records  # this folder is the script's sys.path[0]

    from modelyard.deploy.serving.features import RawFeatures
    from modelyard.deploy.serving.schema import Feature, InputSchema

    fitted = demo_fitted_spec()
    raw = RawFeatures(fitted, InputSchema([Feature(name, "double") for name in fitted.names]))
    records = raw_records(fitted, 1000)
    precomputed = [dict(zip(fitted.names, row, strict=True)) for row in raw.prepare(records).matrix.tolist()]
    results = {
        "raw_1_us": best_us(lambda: raw.prepare(records[:1]), 2000),
        "precomputed_1_us": best_us(lambda: raw.prepare(precomputed[:1]), 2000),
        "raw_1000_us": best_us(lambda: raw.prepare(records), 20),
        "precomputed_1000_us": best_us(lambda: raw.prepare(precomputed), 20),
    }
    print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
