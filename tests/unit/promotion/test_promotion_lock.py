"""The promotion lock across processes: exclusive, bounded wait, released when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.core.config import Config, load_config
from modelyard.promotion import locks
from modelyard.promotion.aliases import pair_lock
from modelyard.promotion.decision import PromotionError

REPO = Path(__file__).resolve().parents[3]
MODEL = "pickup_eta-jakarta"
HOLDER = """
import sys, time
from modelyard.core.config import load_config
from modelyard.promotion.aliases import pair_lock
config = load_config(sys.argv[1], environ={"MODELYARD_STORAGE__ROOT": sys.argv[2]})
with pair_lock(config, sys.argv[3]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(REPO / "modelyard.yaml", environ={"MODELYARD_STORAGE__ROOT": str(tmp_path)})


@pytest.fixture
def holder(config: Config) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", HOLDER, str(REPO / "modelyard.yaml"), str(config.storage.root), MODEL]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_another_process_holding_the_lock_makes_us_wait_then_fail(
    config: Config, holder: subprocess.Popen[str]
) -> None:
    started = time.monotonic()
    expected = f"{MODEL}: another promotion has held .* for over 1s"
    with pytest.raises(PromotionError, match=expected), pair_lock(config, MODEL, timeout=1.0):
        pass
    assert 0.9 <= time.monotonic() - started < 5


def test_a_killed_holder_releases_the_lock(config: Config, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with pair_lock(config, MODEL, timeout=2.0) as where:
        assert Path(where).parent == config.storage.state_dir / "locks"


def test_pairs_lock_independently(config: Config, holder: subprocess.Popen[str]) -> None:
    with pair_lock(config, "pickup_eta-bangkok", timeout=0.5):
        pass


def test_the_lock_is_taken_through_one_swappable_function(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []
    real = locks.promotion_lock

    def recording(storage, model_name: str, timeout: float):  # type: ignore[no-untyped-def]
        taken.append(model_name)
        return real(storage, model_name, timeout)

    monkeypatch.setattr(locks, "promotion_lock", recording)
    with pair_lock(config, MODEL, timeout=1.0) as where:
        assert where == str(config.storage.state_dir / "locks" / f"promotion-{MODEL}.lock")
    assert taken == [MODEL]


def test_without_lock_url_a_local_root_takes_the_file_lock(config: Config) -> None:
    assert config.storage.lock_url is None
    with locks.promotion_lock(config.storage, MODEL, timeout=1.0) as where:
        assert where.endswith(f"locks/promotion-{MODEL}.lock")
