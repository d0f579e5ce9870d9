"""The calendar each holdout row is featurised in: its own region's, as the server featurises it (ADR 0015).

A pooled model's feature spec carries one calendar (its largest member's). The server computes a
request's time features in the request's region's calendar whenever the model serving it was fitted
for another region (``ServedModel.calendar_for`` in ``deploy/serving/runtime.py``). The gates do the
same per holdout row: a row of region R is featurised in the version's own calendar when the version
was fitted for R, else in R's calendar from the config (zone and festivals). So a pooled challenger, a
pooled champion and the pooled model of the graduation gate are judged on the features they are served.

A pooled snapshot's rows do not name their region: :func:`row_regions` labels them from its
``source`` (``pooled:<group>:jakarta@<digest>,surabaya@<digest>``), stacking the members' times in
that order and in time order (stable), as ``training.pooled`` stacked their rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core.contracts.columns import TIME_COLUMN
from modelyard.promotion.gates import GateInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.core.config import Config
    from modelyard.core.featurespec import Calendar, FittedSpec
    from modelyard.pipeline.snapshots import SnapshotMeta

POOLED_SOURCE = "pooled:"  # training.pooled.POOLED_SOURCE: promotion reads what training wrote


@dataclass(frozen=True)
class RowCalendars:
    """Where each holdout row was observed, and the config's calendar of each such region."""

    regions: np.ndarray  # one region name per row
    calendars: Mapping[str, Calendar]  # configured regions only; a region since removed keeps the version's own

    def parts(self, fitted: FittedSpec) -> list[tuple[Calendar, np.ndarray]]:
        """The rows (boolean masks) ``fitted`` featurises in each calendar, rows of equal calendars together."""
        import numpy as np

        by_calendar: dict[tuple[object, ...], tuple[Calendar, np.ndarray]] = {}
        for region in dict.fromkeys(self.regions.tolist()):
            calendar = self.calendar_of(fitted, str(region))
            key = (calendar.timezone, calendar.holidays)
            mask = self.regions == region
            known = by_calendar.get(key)
            by_calendar[key] = (calendar, mask if known is None else known[1] | mask)
        return list(by_calendar.values()) or [(fitted.calendar, np.zeros(0, dtype=bool))]

    def calendar_of(self, fitted: FittedSpec, region: str) -> Calendar:
        """The server's rule: the version's own calendar for its own region (lower case, as plans name
        regions), else the region's."""
        if fitted.calendar.region.lower() == region.lower() or region not in self.calendars:
            return fitted.calendar
        return self.calendars[region]


def row_calendars(config: Config, regions: np.ndarray) -> RowCalendars:
    """The :class:`RowCalendars` of rows observed in ``regions`` (one name per row)."""
    configured = set(config.region_names)
    present = [str(r) for r in dict.fromkeys(regions.tolist()) if r in configured]
    return RowCalendars(regions, {name: config.region(name).calendar() for name in present})


def pooled_members(source: str) -> list[tuple[str, str]] | None:
    """The (region, snapshot digest) of each member a pooled snapshot's ``source`` names; None: not pooled."""
    if not source.startswith(POOLED_SOURCE):
        return None
    _, _, members = source[len(POOLED_SOURCE) :].partition(":")
    return [(region, digest) for region, _, digest in (m.rpartition("@") for m in members.split(",") if m)]


def row_regions(config: Config, meta: SnapshotMeta, frame: pd.DataFrame) -> np.ndarray:
    """The region of every row of snapshot ``frame``: the snapshot's own, or a pooled snapshot's member's.

    Raises:
        GateInputError: a member snapshot cannot be read, or its rows do not stack to the pooled ones.
    """
    import numpy as np

    members = pooled_members(meta.source)
    if members is None:
        return np.full(len(frame), meta.region, dtype=object)
    return _member_labels(config, meta, members, frame)


def _member_labels(
    config: Config, meta: SnapshotMeta, members: list[tuple[str, str]], frame: pd.DataFrame
) -> np.ndarray:
    import numpy as np
    import pandas as pd

    times = [_member_times(config, meta, region, digest) for region, digest in members]
    labels = np.concatenate(
        [np.full(len(t), region, dtype=object) for (region, _), t in zip(members, times, strict=True)]
    )
    stacked = pd.concat(times, ignore_index=True)
    order = stacked.sort_values(kind="stable").index.to_numpy()
    expected = _naive_utc(frame[TIME_COLUMN])
    if len(order) != len(frame) or not bool((_naive_utc(stacked)[order] == expected).all()):
        raise GateInputError(
            f"pooled snapshot {meta.digest} of {meta.family}/{meta.region}: its member snapshots "
            f"({', '.join(r for r, _ in members)}) do not stack to its rows; retrain the pooled model"
        )
    return labels[order]


def _member_times(config: Config, meta: SnapshotMeta, region: str, digest: str) -> pd.Series:
    import pandas as pd

    from modelyard.pipeline.snapshots import SnapshotNotFoundError, read_snapshot

    features_dir = config.storage.features_dir
    try:
        member = read_snapshot(features_dir, meta.family, region, digest)
        with member.path(features_dir).open("rb") as handle:
            return pd.read_parquet(handle, columns=[TIME_COLUMN])[TIME_COLUMN]
    except (SnapshotNotFoundError, OSError) as exc:
        raise GateInputError(
            f"pooled snapshot {meta.digest} of {meta.family}/{meta.region}: cannot read member '{region}' "
            f"to tell its rows' regions: {exc}"
        ) from exc


def _naive_utc(times: pd.Series) -> np.ndarray:
    import pandas as pd

    return pd.to_datetime(times, utc=True).dt.tz_localize(None).to_numpy()
