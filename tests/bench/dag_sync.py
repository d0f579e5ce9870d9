"""DAG-sync benchmark: ``python tests/bench/dag_sync.py --pairs 1000`` (not a test; ADR 0020).

What Airflow's DAG processor costs while nothing runs, at a pair count: the scale bench's config
and stack (real ``airflow standalone``, metadata on a fresh PostgreSQL database), once as Airflow
ships and once with ``plugins/airflow_fixes.py`` installed by the stack's local settings, one after
the other in the same run, and a third time as the stack starts (the fix, and Airflow re-parsing an
unchanged DAG file every ``dag_reparse_seconds`` instead of 30 s). After the DAGs are listed, each
stack is watched for ``--seconds`` (longer than one re-parse interval): the
DAG processor's process tree's CPU seconds and its peak RSS (sampled twice a second), and the
whole stack's peak RSS. ``--write`` puts the table into docs/benchmarks.md between the ``dag-sync``
markers.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from modelyard.deploy.devstack import stack as stack_module  # noqa: E402
from modelyard.deploy.rollout.processes import ManagedProcess  # noqa: E402
from tests.bench.scale import postgres_database, scale_stack, write_section  # noqa: E402

BEGIN, END = "<!-- dag-sync:begin (tests/bench/dag_sync.py --write rewrites this section) -->", "<!-- dag-sync:end -->"
AS_SHIPPED = '"""Airflow as it ships (tests/bench/dag_sync.py): no fix installed."""\n'


class TreeSampler:
    """Samples the stack's process trees: the DAG processor's CPU seconds and RSS, and the stack's RSS."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.peak_processor_rss = 0
        self.peak_stack_rss = 0
        self._cpu: dict[int, float] = {}  # DAG-processor pid -> its latest CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dag-sync-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._baseline = self._processor_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def processor_cpu_seconds(self) -> float:
        return sum(self._cpu.values()) - self._baseline

    def _processes(self) -> list[Any]:
        import psutil

        found = []
        for pid_file in self.run_dir.glob("*.pid"):
            pid = ManagedProcess(pid_file.stem, self.run_dir).pid()
            with contextlib.suppress(psutil.Error):
                if pid is not None:
                    root = psutil.Process(pid)
                    found += [root, *root.children(recursive=True)]
        return found

    def _processor_cpu(self) -> float:
        import psutil

        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                if "dag-processor" in " ".join(process.cmdline()):
                    times = process.cpu_times()
                    self._cpu[process.pid] = times.user + times.system
        return sum(self._cpu.values())

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            stack_rss = processor_rss = 0
            for process in self._processes():
                with contextlib.suppress(psutil.Error):
                    rss = process.memory_info().rss
                    stack_rss += rss
                    if "dag-processor" in " ".join(process.cmdline()):
                        processor_rss += rss
                        times = process.cpu_times()
                        self._cpu[process.pid] = times.user + times.system
            self.peak_stack_rss = max(self.peak_stack_rss, stack_rss)
            self.peak_processor_rss = max(self.peak_processor_rss, processor_rss)


@contextlib.contextmanager
def airflow_as(fixed: bool, airflow_interval: bool) -> Iterator[None]:
    """The stack's Airflow with or without the fix, re-parsing at Airflow's default interval or the stack's."""
    shipped, interval = stack_module.LOCAL_SETTINGS, stack_module.dag_reparse_seconds
    stack_module.LOCAL_SETTINGS = shipped if fixed else AS_SHIPPED
    if airflow_interval:
        stack_module.dag_reparse_seconds = lambda pairs: 30
    try:
        yield
    finally:
        stack_module.LOCAL_SETTINGS, stack_module.dag_reparse_seconds = shipped, interval


def watch(pairs: int, seconds: float, fixed: bool, airflow_interval: bool) -> dict[str, Any]:
    """One stack at ``pairs``, idle for ``seconds`` after its DAGs are listed: what the DAG processor cost."""
    with contextlib.ExitStack() as context:
        tmp = context.enter_context(tempfile.TemporaryDirectory(prefix="modelyard-dag-sync-"))
        database = context.enter_context(postgres_database())
        context.enter_context(airflow_as(fixed, airflow_interval))
        stack = context.enter_context(scale_stack(Path(tmp), pairs, airflow_db=database))
        with TreeSampler(stack.settings.run_dir) as sampler:
            time.sleep(seconds)
        return {
            "airflow": ("with airflow_fixes" if fixed else "as shipped")
            + f", re-parse every {stack.settings.dag_reparse_seconds} s",
            "seconds": seconds,
            "processor_cpu_s": round(sampler.processor_cpu_seconds, 1),
            "processor_cpu_share": round(sampler.processor_cpu_seconds / seconds, 3),
            "processor_peak_rss_mb": round(sampler.peak_processor_rss / 2**20, 1),
            "stack_peak_rss_mb": round(sampler.peak_stack_rss / 2**20, 1),
        }


def render(pairs: int, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"## Airflow's DAG sync at {pairs} pairs (`tests/bench/dag_sync.py`, ADR 0020)",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}: the scale bench's stack at {pairs} pairs, idle (no run), "
        f"watched for {rows[0]['seconds']:.0f} s after its DAGs were listed; the stacks one after the other.",
        "",
        "| Airflow | DAG processor CPU s | share of one core | DAG processor peak RSS MB | stack peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['airflow']} | {row['processor_cpu_s']} | {row['processor_cpu_share']:.0%} | "
            f"{row['processor_peak_rss_mb']} | {row['stack_peak_rss_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=330, help="watch each stack this long (over one re-parse)")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    # Airflow as it ships, the fix alone, and the stack as it starts (the fix, re-parsing spaced with the pairs).
    variants = [(False, True), (True, True), (True, False)]
    rows = [watch(args.pairs, args.seconds, fixed, airflow_interval) for fixed, airflow_interval in variants]
    text = render(args.pairs, rows)
    print(text, flush=True)
    if args.write:
        write_section(REPO / "docs" / "benchmarks.md", BEGIN, END, text)


if __name__ == "__main__":
    main()
