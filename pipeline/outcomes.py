"""Outcomes of served requests, taken from the data as it arrives, for the monitoring stage.

A served prediction is answered with a request id (the client's ``X-Request-Id`` when it sent
a short one, e.g. its booking id; else one the server made). When the row that request
predicted later arrives in the dataset with its label, and the dataset declares the column
that holds that id (``request_id_column``, and ``request_record_column`` for a request of many
records), the data stage writes those rows' ``request_id``, ``record`` and target to
``<storage.root>/monitoring/outcomes/<family>/<region>/ingested-<digest>.parquet``. The
monitoring stage joins them with the sampled predictions on (request id, record) and reports
live AUC or MAE beside the version's holdout figure (``training/monitoring.py``).

The file is named by the snapshot's digest and written whole (``storage.write_bytes_atomic``),
so a re-run of the same data writes nothing, and a reader never sees half of one.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from modelyard.core import storage

if TYPE_CHECKING:
    import pandas as pd
    from upath import UPath

    from modelyard.core.config import PairView

PREFIX = "ingested-"


def outcomes_frame(raw: pd.DataFrame, pair: PairView) -> pd.DataFrame | None:
    """The rows of ``raw`` that are outcomes of served requests: ``request_id``, ``record`` and the target.

    None when the family's dataset declares no ``request_id_column``.
    """
    import pandas as pd

    from modelyard.pipeline.features import target_values

    dataset, family = pair.dataset, pair.family
    if not dataset.request_id_column:
        return None
    ids = raw[dataset.request_id_column].reset_index(drop=True)
    served = ids.notna() & (ids.astype(str).str.len() > 0)
    records = (
        raw[dataset.request_record_column].reset_index(drop=True)
        if dataset.request_record_column
        else pd.Series(0, index=ids.index)
    )
    served &= records.notna()
    target = target_values(raw, family)
    return pd.DataFrame(
        {
            "request_id": ids[served].astype(str).to_numpy(),
            "record": records[served].astype("int64").to_numpy(),
            family.target: target[served].to_numpy(),
        }
    )


def write_outcomes(outcomes_dir: UPath, pair: PairView, raw: pd.DataFrame, digest: str) -> tuple[int, UPath | None]:
    """Write the outcomes among ``raw`` for the snapshot ``digest``; (rows, path), (0, None) when none.

    Re-running with the same snapshot rewrites nothing.

    Args:
        outcomes_dir: ``storage.outcomes_dir``; the file goes under ``<family>/<region>/``.
        pair: The (family, region) the rows are of.
        raw: The pair's raw rows.
        digest: The snapshot the rows were published in.
    """
    frame = outcomes_frame(raw, pair)
    if frame is None or frame.empty:
        return 0, None
    path = outcomes_dir / pair.family.name / pair.region.name / f"{PREFIX}{digest[:16]}.parquet"
    if not path.exists():
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        storage.write_bytes_atomic(path, buffer.getvalue())
    return len(frame), path
