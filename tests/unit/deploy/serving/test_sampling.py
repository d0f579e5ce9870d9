"""The prediction log: per-version partitions, rotation, drop-when-full, no half-written file visible."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from modelyard.core import storage
from modelyard.deploy.serving.sampling import (
    MAX_EXTRA_FIELDS,
    PredictionLogWriter,
    Sample,
    SamplingSettings,
    Shipper,
    new_request_id,
    trim_records,
)

pytestmark = pytest.mark.unit

LABELS = ("driver_acceptance", "jakarta", "main", "3")


def _sample(request_id: str, labels: tuple[str, str, str, str] = LABELS, at: float = 1_800_000_000.0) -> Sample:
    features = np.array([[1.5, 2.0]], dtype=np.float32)
    return Sample("prediction", request_id, labels, "plan1", [{"x": 1}], features, np.array([0.25]), at)


def _lines(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            out.extend(json.loads(line) for line in handle)
    return out


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_samples_land_in_their_family_region_version_folder_with_features(tmp_path):
    sink = PredictionLogWriter(tmp_path, SamplingSettings(sample_rate=1.0))
    sink.offer(_sample("a"))
    sink.offer(_sample("b", ("driver_acceptance", "surabaya", "main", "7")))
    sink.close(wait=10)
    entries = _lines(tmp_path / "driver_acceptance" / "jakarta" / "3")
    assert [e["request_id"] for e in entries] == ["a"]
    assert entries[0]["features"] == [[1.5, 2.0]]
    assert entries[0]["records"] == [{"x": 1}]
    assert entries[0]["predictions"] == [0.25]
    assert entries[0]["ts"].startswith("2027-01-15T08:00:00")
    assert [e["request_id"] for e in _lines(tmp_path / "driver_acceptance" / "surabaya" / "7")] == ["b"]


def test_a_sampled_record_keeps_the_models_fields_and_a_few_short_others():
    junk = {f"junk{i}": "x" * 20_000_000 if i == 0 else i for i in range(50)}
    records = [{"rating": 4.5, "city": "y" * 1000, "nested": {"a": [1] * 1000}, **junk}, "text", 7]
    kept = trim_records(records, {"rating", "city"})
    assert kept[1:] == ["str", "int"]
    assert kept[0]["rating"] == 4.5
    assert len(kept[0]["city"]) == 256
    extras = [name for name in kept[0] if name not in ("rating", "city")]
    assert len(extras) == MAX_EXTRA_FIELDS
    assert kept[0]["nested"] == "<dict>"
    assert len(kept[0]["junk0"]) == 256
    assert len(json.dumps(kept)) < 10_000


def test_a_record_over_the_cap_or_a_full_spool_is_dropped_and_counted(tmp_path):
    drops: list[int] = []
    settings = SamplingSettings(1.0, rotate_mb=1000, max_record_kb=1.0, max_spool_mb=0.002)
    sink = PredictionLogWriter(tmp_path, settings, on_drop=lambda: drops.append(1))
    big = Sample("prediction", "big", LABELS, "plan1", [{"x": "z" * 2000}], None, [0.1], 1_800_000_000.0)
    sink.offer(big)
    for n in range(20):  # ~300 bytes each: the 2 kB folder fills after a few
        sink.offer(_sample(f"s{n}"))
    sink.close(wait=10)
    written = _lines(tmp_path / "driver_acceptance" / "jakarta" / "3")
    assert "big" not in [e.get("request_id") for e in written]
    assert sink.refused["too_large"] == 1
    assert sink.refused["spool_full"] >= 10
    assert 1 <= sink.written < 10
    assert len(drops) == sink.dropped == 1 + sink.refused["spool_full"]


def test_sample_files_are_readable_by_the_server_only(tmp_path):
    sink = PredictionLogWriter(tmp_path, SamplingSettings(1.0))
    sink.offer(_sample("a"))
    sink.close(wait=10)
    files = list((tmp_path / "driver_acceptance" / "jakarta" / "3").glob("*.jsonl.gz"))
    assert files
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}


def test_an_open_file_is_hidden_until_it_is_rotated(tmp_path):
    clock = FakeClock()
    sink = PredictionLogWriter(tmp_path, SamplingSettings(1.0, rotate_mb=1000, rotate_seconds=60), clock=clock)
    sink.offer(_sample("a"))
    folder = tmp_path.joinpath(*LABELS[:2], LABELS[3])
    _wait_for(lambda: sink.written == 1)
    assert list(folder.glob("*.jsonl.gz")) == []  # the reader's pattern sees nothing yet
    assert [p.name.startswith(".") and p.name.endswith(".part") for p in folder.iterdir()] == [True]
    clock.now += 61  # the writer rotates an old file even when no sample arrives
    _wait_for(lambda: len(list(folder.glob("*.jsonl.gz"))) == 1, timeout=5)
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]
    sink.close(wait=10)


def test_files_rotate_by_size(tmp_path):
    sink = PredictionLogWriter(tmp_path, SamplingSettings(1.0, rotate_mb=0.0001, rotate_seconds=3600))
    for index in range(20):
        sink.offer(_sample(f"r{index}"))
    sink.close(wait=10)
    folder = tmp_path.joinpath(*LABELS[:2], LABELS[3])
    files = sorted(folder.glob("*.jsonl.gz"))
    assert len(files) > 1
    assert sorted(e["request_id"] for e in _lines(folder)) == sorted(f"r{i}" for i in range(20))


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    gate = threading.Event()
    drops: list[int] = []
    sink = SlowDisk(gate, tmp_path, SamplingSettings(1.0, queue_size=2), on_drop=lambda: drops.append(1))
    sink.offer(_sample("block"))  # the writer thread is now stuck writing this one
    _wait_for(lambda: sink._queue.qsize() == 0)
    results = [sink.offer(_sample(f"x{i}")) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert sink.dropped == 3
    assert len(drops) == 3
    gate.set()
    sink.close(wait=10)
    assert sorted(e["request_id"] for e in _lines(tmp_path.joinpath(*LABELS[:2], LABELS[3]))) == ["block", "x0", "x1"]


def test_every_requests_outcome_is_counted_per_version(tmp_path):
    sink = PredictionLogWriter(tmp_path, SamplingSettings(0.0))
    for outcome in ("ok", "ok", "bad_input", "ok", "error"):
        sink.count(LABELS, outcome)
    sink.count(("driver_acceptance", "jakarta", "main", "4"), "ok")
    sink.close(wait=10)
    lines = _lines(tmp_path / "driver_acceptance" / "jakarta" / "3")
    assert [(line["kind"], line["counts"]) for line in lines] == [("counts", {"ok": 3, "bad_input": 1, "error": 1})]
    assert _lines(tmp_path / "driver_acceptance" / "jakarta" / "4")[0]["counts"] == {"ok": 1}


def test_a_closed_log_refuses_samples(tmp_path):
    sink = PredictionLogWriter(tmp_path, SamplingSettings(1.0))
    sink.close(wait=10)
    assert sink.offer(_sample("late")) is False
    assert sink.dropped == 1


def test_sampling_draws_about_the_rate():
    sink = PredictionLogWriter(Path("unused"), SamplingSettings(0.2))
    hits = sum(sink.sampled() for _ in range(20_000))
    sink.close()
    assert 3400 < hits < 4600
    assert PredictionLogWriter(Path("unused"), SamplingSettings(0.0)).sampled() is False


def test_request_ids_keep_a_clients_short_token_else_are_fresh():
    assert new_request_id("order-42") == "order-42"
    for sent in (None, "", "x" * 65, "two words", "bad\nline"):
        made = new_request_id(sent)
        assert len(made) == 32
        assert made != sent


class SlowDisk(PredictionLogWriter):
    """A log whose disk hangs until ``gate`` opens."""

    def __init__(self, gate: threading.Event, *args, **kwargs) -> None:
        self.gate = gate
        super().__init__(*args, **kwargs)

    def _handle(self, sample: Sample) -> None:
        self.gate.wait(30)
        super()._handle(sample)


def _wait_for(condition, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


# -- shipping to an object store (fsspec's in-memory one here; S3 itself in tests/production)


@pytest.fixture
def memory_url():
    import uuid

    url = f"memory://samples-{uuid.uuid4().hex[:8]}"
    yield url
    fs = storage.storage_path(url).fs
    if fs.exists(url):
        fs.rm(url, recursive=True)


def _shipped_lines(target) -> list[dict]:
    out = []
    for path in sorted(target.rglob("*.jsonl.gz")):
        out.extend(json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines())
    return out


def test_rotated_files_are_shipped_under_the_same_key_and_leave_the_spool(tmp_path, memory_url):
    shipper = Shipper(tmp_path, storage.storage_path(memory_url))
    sink = PredictionLogWriter(tmp_path, SamplingSettings(sample_rate=1.0), shipper=shipper)
    sink.offer(_sample("a"))
    sink.offer(_sample("b", ("driver_acceptance", "surabaya", "main", "7")))
    sink.close(wait=10)
    assert list(tmp_path.rglob("*.jsonl.gz")) == []  # shipped, then removed from the spool
    target = shipper.target
    assert [e["request_id"] for e in _shipped_lines(target / "driver_acceptance" / "jakarta" / "3")] == ["a"]
    assert [e["request_id"] for e in _shipped_lines(target / "driver_acceptance" / "surabaya" / "7")] == ["b"]
    assert shipper.shipped == 2
    assert shipper.failed == 0


class FlakyStore:
    """A target whose writes fail until ``up`` is set; writes go to ``inner`` then."""

    def __init__(self, inner, up: threading.Event) -> None:
        self.inner, self.up = inner, up

    def joinpath(self, *parts):
        return FlakyStore(self.inner.joinpath(*parts), self.up)

    def write_bytes(self, data: bytes) -> None:
        if not self.up.is_set():
            raise ConnectionError("store unreachable")
        self.inner.write_bytes(data)


def test_a_file_that_fails_to_ship_stays_in_the_spool_and_is_shipped_later(tmp_path, memory_url):
    up = threading.Event()
    target = storage.storage_path(memory_url)
    shipper = Shipper(tmp_path, FlakyStore(target, up))
    sink = PredictionLogWriter(tmp_path, SamplingSettings(sample_rate=1.0), shipper=shipper)
    sink.offer(_sample("a"))
    sink.flush()
    kept = list(tmp_path.rglob("*.jsonl.gz"))
    assert len(kept) == 1
    assert shipper.failed == 1
    sink.close(wait=10)
    up.set()
    again = PredictionLogWriter(tmp_path, SamplingSettings(sample_rate=1.0), shipper=shipper)  # e.g. the next process
    again.close(wait=10)
    assert list(tmp_path.rglob("*.jsonl.gz")) == []
    assert [e["request_id"] for e in _shipped_lines(target / "driver_acceptance" / "jakarta" / "3")] == ["a"]


# -- a disk that refuses writes


class FullDisk:
    """``_Part``'s writes raise ENOSPC while ``full`` is set (what a full disk or quota raises)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import errno

        from modelyard.deploy.serving import sampling

        self.full = False
        real_write, real_flush = sampling._Part.write, sampling._Part.flush

        def check() -> None:
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")

        def write(part, line, *, sample=True):
            check()
            real_write(part, line, sample=sample)

        def flush(part):
            check()
            real_flush(part)

        monkeypatch.setattr(sampling._Part, "write", write)
        monkeypatch.setattr(sampling._Part, "flush", flush)


def test_a_full_disk_drops_and_counts_samples_warns_once_and_resumes(tmp_path, monkeypatch, caplog):
    import logging

    from modelyard.deploy.serving.sampling import WRITE_RETRY_SECONDS

    caplog.set_level(logging.INFO, logger="modelyard.serving.sampling")
    disk, clock, drops = FullDisk(monkeypatch), FakeClock(), []
    sink = PredictionLogWriter(tmp_path, SamplingSettings(1.0), clock=clock, on_drop=lambda: drops.append(1))
    sink.offer(_sample("kept-in-the-open-file"))
    _wait_for(lambda: sink.written == 1)
    disk.full = True
    for n in range(5):
        sink.offer(_sample(f"full{n}"))
    _wait_for(lambda: sink.dropped == 6)  # the 5, and the one in the file the failed write cut
    disk.full = False
    sink.offer(_sample("too-soon"))  # within the retry pause: not tried
    _wait_for(lambda: sink.dropped == 7)
    clock.now += WRITE_RETRY_SECONDS
    sink.offer(_sample("after"))
    sink.close(wait=10)
    assert [e.get("request_id") for e in _lines(tmp_path.joinpath(*LABELS[:2], LABELS[3]))] == ["after"]
    assert sink.refused == {"disk_full": 7}
    assert len(drops) == sink.dropped == 7
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "No space left on device" in warnings[0]
    assert 'modelyard_prediction_log_samples{outcome="dropped"}' in warnings[0]
    resumed = [r.getMessage() for r in caplog.records if "writing again" in r.getMessage()]
    assert resumed == [f"prediction log writing again in {tmp_path} after 7 samples were lost (disk_full)"]
    assert not list(tmp_path.rglob("*.part")), "the cut file was left behind"
