"""storage.root by URL: an object store (fsspec's in-memory one) behaves like a local folder.

Publishing there is atomic (a writer that dies before the metadata leaves no visible
snapshot, and the next run completes it), re-runs write nothing, and secrets in the config
file are refused with the key named.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.core import storage
from modelyard.core.config import Config, ConfigError, Storage, load_config
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.pipeline.snapshots import SnapshotNotFoundError, latest_snapshot, load_frame

REPO = Path(__file__).resolve().parents[3]
LOCK_URL = "postgresql://postgres@127.0.0.1/modelyard_unused"


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://modelyard-{uuid.uuid4().hex[:8]}"
    yield root
    fs = storage.storage_path(root).fs
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _config(root: str, **overrides: str) -> Config:
    environ = {
        "MODELYARD_STORAGE__ROOT": root,
        "MODELYARD_STORAGE__LOCK_URL": LOCK_URL,
        "MODELYARD_DATA__SYNTHETIC__ROWS": "600",
        "MODELYARD_DATA__MIN_ROWS": "200",
        **overrides,
    }
    return load_config(REPO / "modelyard.yaml", environ=environ)


def _objects(root: str) -> dict[str, bytes]:
    fs = storage.storage_path(root).fs
    return {path: fs.cat_file(path) for path in fs.find(root)}


def test_a_url_root_publishes_reads_and_reruns_write_nothing(memory_root: str) -> None:
    config = _config(memory_root)
    assert not config.storage.is_local
    first = build_all(config, families=["driver_acceptance"], regions=["jakarta"])
    assert [r.status for r in first] == ["published"]
    meta = latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta")
    assert load_frame(config.storage.features_dir, meta).shape[0] == meta.rows
    assert str(first[0].report).startswith("memory://")
    before = _objects(memory_root)
    again = build_all(config, families=["driver_acceptance"], regions=["jakarta"])
    assert [r.status for r in again] == ["unchanged"]
    assert _objects(memory_root) == before


def test_a_writer_dying_before_the_metadata_leaves_nothing_visible(
    memory_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(memory_root)
    real = snapshots.write_bytes_atomic

    def dies_at_the_metadata(path: object, data: bytes) -> None:
        if str(path).endswith(".json"):
            raise KeyboardInterrupt("worker killed")
        real(path, data)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshots, "write_bytes_atomic", dies_at_the_metadata)
    with pytest.raises(KeyboardInterrupt):
        build_all(config, families=["driver_acceptance"], regions=["jakarta"])
    with pytest.raises(SnapshotNotFoundError, match="no valid snapshot"):
        latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta")
    monkeypatch.setattr(snapshots, "write_bytes_atomic", real)
    retried = build_all(config, families=["driver_acceptance"], regions=["jakarta"])
    assert [r.status for r in retried] == ["published"]
    assert latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta").digest == retried[0].digest


def test_options_read_environment_variables_when_the_path_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TEST_ENDPOINT", "http://127.0.0.1:9")
    settings = Storage(
        root="s3://bucket/prefix", options={"endpoint_url": "${MODELYARD_TEST_ENDPOINT}"}, lock_url=LOCK_URL
    )
    assert settings.root.storage_options["endpoint_url"] == "http://127.0.0.1:9"
    assert settings.model_dump()["options"] == {"endpoint_url": "${MODELYARD_TEST_ENDPOINT}"}  # never the value
    assert str(settings.features_dir) == "s3://bucket/prefix/features"


def test_an_unset_variable_is_named() -> None:
    with pytest.raises(storage.StorageError, match=r"storage.options.endpoint_url reads \$\{MODELYARD_NOT_SET_"):
        storage.expand_options({"endpoint_url": "${MODELYARD_NOT_SET_XYZ}"}, environ={})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"MODELYARD_STORAGE__OPTIONS": "{secret: abc123}"}, r"storage.options.secret: a secret must not be written"),
        ({"MODELYARD_STORAGE__OPTIONS": "{key: AKIAEXAMPLE}"}, r"storage.options.key: a secret must not be written"),
        ({"MODELYARD_STORAGE__ROOT": "s3://me:hunter2@bucket/x"}, r"storage: the URL holds a password"),
        ({"MODELYARD_STORAGE__LOCK_URL": "postgresql://me:hunter2@db/mlflow"}, r"storage.lock_url: the URL holds"),
        ({"MODELYARD_STORAGE__LOCK_URL": "redis://127.0.0.1"}, r"storage.lock_url: 'redis://127.0.0.1' is not a"),
        ({"MODELYARD_STORAGE__LOCK_URL": "null"}, r"storage.lock_url: required when storage.root is not a local"),
    ],
)
def test_secrets_and_missing_locks_are_refused_naming_the_key(
    memory_root: str, overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        _config(memory_root, **overrides)


def test_secret_options_may_reference_the_environment(memory_root: str) -> None:
    config = _config(memory_root, MODELYARD_STORAGE__OPTIONS="{secret: '${HOME}'}")
    assert config.storage.options == {"secret": "${HOME}"}


def test_local_roots_stay_plain_paths_relative_to_the_config(tmp_path: Path) -> None:
    file = tmp_path / "modelyard.yaml"
    file.write_text((REPO / "modelyard.yaml").read_text())
    config = load_config(file, environ={"MODELYARD_STORAGE__ROOT": "state", "MODELYARD_STORAGE__LOCAL": "scratch"})
    assert isinstance(config.storage.root, Path)
    assert config.storage.root == tmp_path / "state"
    assert config.storage.local_dir == tmp_path / "scratch"
    url = load_config(file, environ={"MODELYARD_STORAGE__ROOT": f"file://{tmp_path}/x"})
    assert isinstance(url.storage.root, Path)
    assert url.storage.root == tmp_path / "x"
    assert url.storage.local_dir == tmp_path / "x"


@pytest.mark.parametrize(
    ("url", "options", "expected"),
    [
        ("postgresql://me:pa/ss@db/mlflow", {}, r"lock: the URL holds a password"),  # "/" inside the password
        ("s3://bucket/x?password=hunter2", {}, r"lock: the URL's query parameter 'password' holds a secret"),
        ("https://acct.blob/x?sv=1&sig=abc", {}, r"query parameter 'sig'"),
        ("s3://bucket", {"client_kwargs": {"aws_secret_access_key": "x"}}, r"lock.options.client_kwargs.aws_secret"),
    ],
)
def test_every_secret_shape_is_refused(url: str, options: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        storage.check_no_secrets(url, options, "lock")


def test_urls_and_options_without_secrets_pass() -> None:
    for url in ("postgresql://me@db/mlflow", "http://127.0.0.1:5000", "s3://b/x?versionId=3", "https://h/x?token=${T}"):
        storage.check_no_secrets(url, {"config_kwargs": {"signature_version": "s3v4"}, "key": "${K}"}, "lock")


def test_a_password_in_the_tracking_uri_is_refused_naming_mlflows_own_variables(tmp_path: Path) -> None:
    file = tmp_path / "modelyard.yaml"
    file.write_text((REPO / "modelyard.yaml").read_text())
    with pytest.raises(ConfigError, match=r"mlflow.tracking_uri: the URL holds a password.*MLFLOW_TRACKING_PASSWORD"):
        load_config(file, environ={"MODELYARD_MLFLOW__TRACKING_URI": "https://me:hunter2@mlflow.example"})


# ---------------------------------------------------------------- local_files: names with glob characters


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")


def test_a_file_named_with_glob_characters_is_that_file(tmp_path: Path) -> None:
    _files(tmp_path, "[2026] jakarta.csv", "2 jakarta.csv")
    assert storage.local_files(str(tmp_path / "[2026] jakarta.csv")) == [tmp_path / "[2026] jakarta.csv"]


def test_a_glob_inside_a_folder_named_with_brackets(tmp_path: Path) -> None:
    _files(tmp_path, "[red]exp/b.csv", "[red]exp/a.csv", "[red]exp/notes.txt", "r/b.csv")
    found = storage.local_files(str(tmp_path / "[red]exp" / "*.csv"))
    assert found == [tmp_path / "[red]exp" / "a.csv", tmp_path / "[red]exp" / "b.csv"]


def test_a_pattern_still_matches_when_no_name_is_written_so(tmp_path: Path) -> None:
    _files(tmp_path, "a/x.csv", "b/x.csv", "c/x.csv", "deep/er/y.csv")
    assert storage.local_files(str(tmp_path / "[ab]" / "x.csv")) == [tmp_path / "a/x.csv", tmp_path / "b/x.csv"]
    assert storage.local_files(str(tmp_path / "**" / "y.csv")) == [tmp_path / "deep/er/y.csv"]
    assert storage.local_files(str(tmp_path / "[xy]" / "x.csv")) == []
    assert storage.local_files(str(tmp_path / "missing.csv")) == []


def test_a_relative_glob_stays_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _files(tmp_path, "exports/jakarta-1.csv", "exports/jakarta-2.csv", "exports/bali-1.csv")
    monkeypatch.chdir(tmp_path)
    expected = [Path("exports/jakarta-1.csv"), Path("exports/jakarta-2.csv")]
    assert storage.local_files("exports/jakarta-*.csv") == expected
    assert storage.local_files("*/bali-1.csv") == [Path("exports/bali-1.csv")]
