"""Ingest benchmark: ``python tests/bench/ingest.py [--mb 1024] [--write]`` (``make bench-ingest``). Not a test.

Writes a CSV of at least ``--mb`` MB in a temporary folder (deleted afterwards) with the demo's
declared ``bookings`` shape: the built-in generator's rows of every configured region, repeated
with fresh booking ids until the file is large enough. Then it reads that file three ways, each
in its own process so each peak RSS is its own:

* **modelyard**: ``modelyard.pipeline.ingest.read_dataset`` as ``modelyard data build`` calls it
  (declared columns, region policy, typing, every row accounted for), streaming the file in chunks
  and setting the rows down per region (``pipeline.spill``), then each region's rows loaded in turn;
* **pyarrow.csv.read_csv**: the whole file into an Arrow table (the floor: a parser and nothing else);
* **pandas.read_csv**: the whole file into a frame.

Reported per reader: wall time, rows/s, peak RSS (``VmHWM`` of the reader's own process) and the
peak after imports (interpreter, pandas, pyarrow, the config). With
``--write`` the table goes to docs/benchmarks.md between the ``ingest`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
READERS = ("modelyard", "pyarrow", "pandas")
ID_MARK = "@@@@"  # replaced by the repetition's number in every booking id
START, END = (
    "<!-- ingest:begin (tests/bench/ingest.py --write rewrites this section) -->",
    "<!-- ingest:end -->",
)


def write_input(path: Path, megabytes: int, rows_per_region: int = 20_000) -> int:
    """Write at least ``megabytes`` MB of the demo's bookings as CSV at ``path``; return the rows written."""
    import pandas as pd

    from modelyard.core.config import load_config
    from modelyard.pipeline.generator import generate_for

    config = load_config(REPO / "modelyard.yaml", environ={})
    frames = [generate_for(config, region, rows_per_region) for region in config.regions]
    base = pd.concat(frames, ignore_index=True).sort_values("event_time", kind="stable")
    base["booking_id"] = base["booking_id"].str.replace("-", f"-{ID_MARK}-", n=1, regex=False)
    header, body = base.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ").split("\n", 1)
    target, written, rows, repeat = megabytes << 20, 0, 0, 0
    with path.open("w", encoding="utf-8") as handle:
        written += handle.write(header + "\n")
        while written < target:
            written += handle.write(body.replace(ID_MARK, f"{repeat:04d}"))
            rows, repeat = rows + len(base), repeat + 1
    return rows


def measure(reader: str, path: Path) -> dict[str, Any]:
    """Read ``path`` with ``reader`` in this process; its wall time, rows and RSS."""
    import pandas as pd
    import pyarrow.csv as pacsv

    from modelyard.core.config import load_config

    config = load_config(REPO / "modelyard.yaml", environ={})
    imported = _peak_mb()
    started = time.perf_counter()
    if reader == "modelyard":
        from modelyard.pipeline.ingest import read_dataset, region_rows
        from modelyard.pipeline.spill import RegionSpill, spill_folder

        dataset = config.dataset("bookings")
        zones = {region.name: region.timezone for region in config.regions}
        spill = RegionSpill(spill_folder(path.parent), dataset.region_column)
        table = read_dataset(path, dataset, dataset.required_columns, zones, spill)
        rows, kept = sum(table.read.values()), 0
        for region in zones:  # as a build does: one region's rows at a time
            frame, _ = region_rows(table, dataset.region_column, region)
            kept += len(frame)
            del frame
        spill.close()
    elif reader == "pyarrow":
        rows = kept = pacsv.read_csv(path).num_rows
    else:
        rows = kept = len(pd.read_csv(path))
    seconds = time.perf_counter() - started
    return {"reader": reader, "seconds": seconds, "rows": rows, "kept": kept, "peak_rss_mb": _peak_mb(),
            "after_imports_mb": imported}  # fmt: skip


def _peak_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would carry the parent's peak over fork and exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(megabytes: int, workdir: Path) -> dict[str, Any]:
    path = workdir / "bookings.csv"
    started = time.perf_counter()
    rows = write_input(path, megabytes)
    size_mb = path.stat().st_size / 2**20
    print(f"wrote {rows:,} rows, {size_mb:,.0f} MB in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = []
    try:
        for reader in READERS:
            command = [sys.executable, __file__, "--worker", reader, "--path", str(path)]
            done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{reader}: {results[-1]}", file=sys.stderr)
    finally:
        path.unlink(missing_ok=True)
    return {"file_mb": size_mb, "rows": rows, "readers": results, "load": os.getloadavg(), "megabytes": megabytes}


def render(results: dict[str, Any]) -> str:
    size, rows = results["file_mb"], results["rows"]
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load = ", ".join(f"{x:.1f}" for x in results["load"])
    lines = [
        START,
        "## Ingest",
        "",
        f"`python tests/bench/ingest.py --mb {results['megabytes']}`, {when}, a {size:,.0f} MB CSV of {rows:,} rows "
        f"of the demo's `bookings` shape, {os.cpu_count()} CPUs, load average at the end: {load}.",
        "Each reader runs in its own process; peak RSS includes the interpreter and its imports.",
        "",
        "| reader | wall s | rows/s | peak RSS MB | after imports MB | peak RSS above imports / file size |",
        "|---|---|---|---|---|---|",
    ]
    for result in results["readers"]:
        lines.append(
            f"| {result['reader']} | {result['seconds']:.1f} | {result['rows'] / result['seconds']:,.0f} | "
            f"{result['peak_rss_mb']:,.0f} | {result['after_imports_mb']:,.0f} | "
            f"{(result['peak_rss_mb'] - result['after_imports_mb']) / size:.1f}x |"
        )
    if results["megabytes"] < 1024:
        lines += [
            "",
            f"**A {results['megabytes']} MB verification run, not the 1 GB figure**: the 1 GB figure is to be "
            "taken on a "
            "quiet machine with `make bench-ingest` (which rewrites this section).",
        ]
    lines.append(END)
    return "\n".join(lines)


def write(report: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    if START in text and END in text:
        text = text[: text.index(START)] + report + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + report + "\n"
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/bench/ingest.py", description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the generated CSV in MB (default 1024)")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", choices=READERS, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(measure(options.worker, options.path)))
        return 0
    with tempfile.TemporaryDirectory(prefix="modelyard-ingest-bench-") as tmp:
        results = run(options.mb, Path(tmp))
    report = render(results)
    print(report)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    if options.write:
        write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
