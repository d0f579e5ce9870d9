"""Every row accounted for: per source file and region, rows read, kept, and dropped by reason.

The data stage drops rows for a handful of declared reasons; each is counted here so the
build report and ``modelyard data build`` can say where every row of a file went:

- ``undeclared region``: the region value is not a configured region (``undeclared_regions: report``);
- ``malformed line`` / ``bad value``: set aside in the quarantine file (``bad_rows: quarantine``);
- ``out of range``: outside the build's ``--start``/``--end`` days;
- ``filter``: the dataset's or family's ``where:`` does not hold;
- ``missing target``: no label (``rows.missing_target: drop``).

A quarantine file holds the set-aside rows of one pair (file, line, region, reason, text) and
goes beside the pair's report.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.core.storage import write_bytes_atomic
from modelyard.pipeline.ingest import BadRow

if TYPE_CHECKING:
    from upath import UPath

UNDECLARED = "undeclared region"
MALFORMED = "malformed line"
BAD_VALUE = "bad value"
OUT_OF_RANGE = "out of range"
REASONS = (UNDECLARED, MALFORMED, BAD_VALUE, OUT_OF_RANGE, "filter", "missing target")


@dataclass(frozen=True)
class RowAccount:
    """Where the rows of one (source file, region value) went for one family."""

    file: str
    region: str
    read: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """'read 1200, kept 1100, dropped 60 (filter), 40 (missing target)'."""
        gone = ", ".join(f"{n} ({reason})" for reason, n in self.dropped.items() if n)
        return f"read {self.read}, kept {self.kept}" + (f", dropped {gone}" if gone else "")


def bad_kind(row: BadRow) -> str:
    """The reason a set-aside row is counted under: a malformed line or a value that does not parse."""
    return MALFORMED if row.reason.startswith("malformed") else BAD_VALUE


def accounts(
    read: dict[str, int], kept: Counter[str], dropped: dict[str, Counter[str]], region: str
) -> tuple[RowAccount, ...]:
    """One :class:`RowAccount` per file of ``read`` (rows read per file) for ``region``."""
    return tuple(
        RowAccount(
            file,
            region,
            count,
            kept[file],
            {reason: by_file[file] for reason, by_file in dropped.items() if by_file[file]},
        )
        for file, count in sorted(read.items())
    )


def undeclared_accounts(undeclared: Counter[tuple[str, str]]) -> tuple[RowAccount, ...]:
    """Accounts of the rows of regions the config does not declare (all dropped)."""
    return tuple(RowAccount(f, r, n, 0, {UNDECLARED: n}) for (f, r), n in sorted(undeclared.items()))


def closest_regions(region: str, seen: Counter[str]) -> list[str]:
    """Region values in the data that look like ``region`` (case ignored), most rows first."""
    lowered: dict[str, list[str]] = {}
    for value in seen:
        lowered.setdefault(value.lower(), []).append(value)
    matches = difflib.get_close_matches(region.lower(), list(lowered), n=3, cutoff=0.6)
    return sorted((v for m in matches for v in lowered[m]), key=lambda v: -seen[v])


def write_quarantine(path: UPath, rows: Iterable[BadRow]) -> UPath:
    """Write the set-aside rows as CSV (file, line, region, reason, text) at ``path``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "line", "region", "reason", "text"])
    for row in sorted(rows, key=lambda r: (r.file, r.line)):
        writer.writerow([row.file, row.line, row.region, row.reason, row.text])
    write_bytes_atomic(path, buffer.getvalue().encode())
    return path
