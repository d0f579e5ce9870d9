"""Typed rows set down per region while a file streams, so a build holds one region's rows at a time.

Ingest reads a file in chunks (:mod:`pipeline.readers`); without a spill the typed rows of
every declared region are concatenated and kept until the build ends, so peak memory follows
the file's kept rows. With a :class:`RegionSpill`, each typed chunk is cut by region and each
part written as a Parquet file under a temporary folder on this host; a pair's build loads only
its region's parts (:meth:`RegionSpill.load`). Peak memory then follows one chunk plus the largest
region's rows (docs/benchmarks.md, "Ingest"). Parts are Parquet, so the pandas dtypes (UTC
timestamps, nullable integers, text) come back as they were written.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RegionSpill:
    """The typed rows of one read, as Parquet parts per region value under ``folder``.

    Attributes:
        folder: Where the parts go (created; removed by :meth:`close`, or when the spill is collected).
        region_column: The column whose value names a row's region.
    """

    folder: Path
    region_column: str
    parts: dict[str, list[Path]] = field(default_factory=dict)
    template: pd.DataFrame | None = None  # the typed columns, no rows (what a region without rows loads)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weakref.finalize(self, shutil.rmtree, self.folder, True)

    def add(self, frame: pd.DataFrame) -> None:
        """Write ``frame``'s rows, one Parquet part per region value in it (rows without a region are dropped)."""
        if self.template is None:
            self.template = frame.iloc[:0].copy()
        for region, part in frame.groupby(self.region_column, sort=False, observed=True):
            path = self.folder / f"{next(self._numbers)}.parquet"
            part.reset_index(drop=True).to_parquet(path, index=False)
            self.parts.setdefault(str(region), []).append(path)

    def load(self, region: str) -> pd.DataFrame:
        """The rows of ``region``, in the order they were read (no rows: the typed columns, empty)."""
        import pandas as pd

        paths = self.parts.get(region, [])
        if not paths:
            return self.template.copy() if self.template is not None else pd.DataFrame()
        frames = [pd.read_parquet(path) for path in paths]
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)

    def close(self) -> None:
        """Remove the parts now (they are removed anyway when the spill is collected)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.parts.clear()


def spill_folder(parent: Path | None = None) -> Path:
    """A new, empty folder for a spill under ``parent`` (default: the system's temporary folder)."""
    return Path(tempfile.mkdtemp(prefix="modelyard-ingest-", dir=parent))
