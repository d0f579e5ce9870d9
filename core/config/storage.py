"""Storage: where snapshots, reports, plans and state live (a local folder or an object store)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema, model_validator
from upath import UPath

from modelyard.core import storage
from modelyard.core.config.base import Section

LOCK_PROTOCOLS = ("postgresql", "postgres")


def _storage_root(value: Any) -> UPath:
    """``storage.root`` as a path or URL (see core/storage.py); options are added by Storage."""
    if isinstance(value, UPath):
        return value
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise ValueError("storage.root: a path or URL is required (e.g. .modelyard or s3://bucket/prefix)")
    return storage.storage_path(value)


StorageRoot = Annotated[
    UPath, PlainValidator(_storage_root), PlainSerializer(str, return_type=str), WithJsonSchema({"type": "string"})
]


class Storage(Section):
    """Where modelyard keeps snapshots, reports, plans and state: a local folder or an object store.

    ``root`` is a path or a URL (``s3://bucket/prefix``, ``gs://``, ``abfs://``); ``options`` are
    its fsspec storage options, which may name environment variables (``${AWS_ENDPOINT_URL}``)
    and never hold a secret. ``local`` is this host's own folder (pid files, logs of processes it
    starts), by default the root when that is local. ``lock_url`` is where promotions lock a
    model: unset, a file lock under the (local) root; ``postgresql://...``, an advisory lock in
    that database (ADR 0004). ``conn_id`` is the Airflow Connection whose credentials the tasks
    use for an object-store root (unset: ``aws_default`` for ``s3://`` when it exists, else the
    environment; see ``plugins/hooks/storage.py``). See docs/production.md.
    """

    root: StorageRoot = Field(Path(".modelyard"), validate_default=True)
    options: dict[str, Any] = {}
    local: Path | None = None
    lock_url: str | None = None
    conn_id: str | None = None

    @model_validator(mode="after")
    def _connect(self) -> Storage:
        storage.check_no_secrets(str(self.root), self.options, "storage")
        if self.lock_url:
            storage.check_no_secrets(self.lock_url, {}, "storage.lock_url")
            if storage.protocol_of(self.lock_url) not in LOCK_PROTOCOLS:
                raise ValueError(
                    f"storage.lock_url: '{self.lock_url}' is not a postgresql:// URL (the promotion lock's "
                    "database, e.g. MLflow's backend store); leave it unset for a file lock on a local root"
                )
        elif not self.is_local:
            raise ValueError(
                f"storage.lock_url: required when storage.root is not a local folder ({self.root}): promotions "
                "on different hosts share no disk for a file lock; set it to postgresql://user@host/db "
                "(MLflow's backend database will do), password in PGPASSWORD or ~/.pgpass"
            )
        if self.options and not self.is_local:
            object.__setattr__(self, "root", storage.storage_path(str(self.root), self.options))
        return self

    @property
    def is_local(self) -> bool:
        """Whether the root is a folder on this host."""
        return storage.is_local(self.root)

    @property
    def local_dir(self) -> Path:
        """This host's own folder: ``local``, else the root when local, else ``~/.local/state/modelyard``."""
        if self.local is not None:
            return self.local
        if isinstance(self.root, Path):
            return self.root
        return Path.home() / ".local" / "state" / "modelyard"

    @property
    def raw_dir(self) -> UPath:
        """Where raw inputs are kept."""
        return self.root / "raw"

    @property
    def features_dir(self) -> UPath:
        """Where feature snapshots are published (``<family>/<region>/``)."""
        return self.root / "features"

    @property
    def state_dir(self) -> UPath:
        """Where stages keep host state (the promotion lock files of a local root)."""
        return self.root / "state"

    @property
    def reports_dir(self) -> UPath:
        """Where reports of failed data go (nothing is published for them)."""
        return self.root / "reports"

    @property
    def samples_dir(self) -> UPath:
        """Where servers write their prediction logs and the monitoring stage reads them."""
        return self.root / "monitoring" / "samples"

    @property
    def outcomes_dir(self) -> UPath:
        """Where outcomes of served requests land (``<family>/<region>/*.csv|parquet``), for live quality."""
        return self.root / "monitoring" / "outcomes"
