"""Immutable, content-addressed feature snapshots per (family, region).

Layout under ``<storage.root>/features/<family>/<region>/``::

    <digest>.parquet      the features and the target, sorted by event time
    <digest>.json         SnapshotMeta (rows, time range, source, validation result)
    <digest>.report.html  the data-quality report (when validation produced one)
    LATEST                the digest of the newest snapshot that passed validation

``<storage.root>`` is a local folder or an object store (``s3://bucket/prefix``, see
core/storage.py); the same steps hold on both. Every file is written whole or not at all
(locally a temporary name renamed into place, on an object store a single PUT). The order
makes publishing atomic: the content-addressed ``<digest>.parquet`` (and report) first, then
``<digest>.json``, which is what makes a snapshot exist, then the ``LATEST`` pointer. A writer
that dies before the JSON leaves only an unreferenced data file under its digest, which no
reader looks at and the next run overwrites with the same bytes; one that dies before the
pointer leaves a complete snapshot that the next run points to. A re-run of the same content
finds the JSON and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from modelyard.core.errors import ModelyardError
from modelyard.core.storage import read_text, write_bytes_atomic

if TYPE_CHECKING:
    import pandas as pd
    from upath import UPath


LATEST = "LATEST"


class SnapshotNotFoundError(ModelyardError, LookupError):
    """No valid snapshot exists for a (family, region)."""


class ValidationSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    success: bool
    checks: int = 0
    failed: int = 0
    failures: list[str] = []
    report: str | None = None  # file name of the HTML report next to the snapshot


class SnapshotMeta(BaseModel):
    """What a snapshot holds; written next to it as ``<digest>.json``."""

    model_config = ConfigDict(frozen=True)

    family: str
    region: str
    digest: str
    rows: int
    columns: list[str]
    target: str
    time_min: dt.datetime
    time_max: dt.datetime
    source: str
    validation: ValidationSummary
    created_at: dt.datetime
    # The fitted feature spec (core.featurespec.FittedSpec.to_dict) that made the features.
    feature_spec: dict[str, Any] | None = None
    # Rows whose category was never seen in the training window, per feature (coded as unknown).
    unknown_categories: dict[str, int] = {}

    def path(self, features_dir: UPath) -> UPath:
        return snapshot_dir(features_dir, self.family, self.region) / f"{self.digest}.parquet"

    def report_path(self, features_dir: UPath) -> UPath | None:
        if not self.validation.report:
            return None
        return snapshot_dir(features_dir, self.family, self.region) / self.validation.report


def snapshot_dir(features_dir: UPath | os.PathLike[str], family: str, region: str) -> UPath:
    """The folder (or key prefix) of one pair's snapshots."""
    from upath import UPath

    folder = features_dir if isinstance(features_dir, UPath) else UPath(features_dir)
    return folder / family / region


def frame_digest(frame: pd.DataFrame) -> str:
    """A digest of the content (columns, dtypes, values), independent of file encoding."""
    import pandas as pd

    hasher = hashlib.sha256()
    hasher.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return hasher.hexdigest()[:16]


def publish(
    features_dir: UPath,
    frame: pd.DataFrame,
    *,
    family: str,
    region: str,
    target: str,
    time_column: str,
    source: str,
    validation: ValidationSummary,
    report_html: str | None = None,
    feature_spec: dict[str, Any] | None = None,
    unknown_categories: dict[str, int] | None = None,
) -> tuple[SnapshotMeta, bool]:
    """Publish ``frame`` as the snapshot of (family, region).

    Only a frame that passed validation becomes ``LATEST``; a failed one is never
    published at all. Publishing content that already exists writes nothing.

    Returns:
        The snapshot's metadata and whether anything new was written.
    """
    if not validation.success:
        raise ValueError(f"{family}/{region}: refusing to publish a snapshot that failed validation")
    digest = frame_digest(frame)
    folder = snapshot_dir(features_dir, family, region)
    meta_file = folder / f"{digest}.json"
    existing = read_text(meta_file)
    if existing is not None:
        meta = SnapshotMeta.model_validate_json(existing)
        created = _point_latest(folder, digest)
        return meta, created
    if report_html is not None:
        validation = validation.model_copy(update={"report": f"{digest}.report.html"})
        write_bytes_atomic(folder / f"{digest}.report.html", report_html.encode())
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomic(folder / f"{digest}.parquet", buffer.getvalue())
    times = frame[time_column]
    meta = SnapshotMeta(
        family=family,
        region=region,
        digest=digest,
        rows=len(frame),
        columns=list(frame.columns),
        target=target,
        time_min=times.min().to_pydatetime(),
        time_max=times.max().to_pydatetime(),
        source=source,
        validation=validation,
        created_at=dt.datetime.now(dt.UTC),
        feature_spec=feature_spec,
        unknown_categories=unknown_categories or {},
    )
    write_bytes_atomic(meta_file, meta.model_dump_json(indent=2).encode())
    _point_latest(folder, digest)
    return meta, True


def _point_latest(folder: UPath, digest: str) -> bool:
    pointer = folder / LATEST
    current = read_text(pointer)
    if current is not None and current.strip() == digest:
        return False
    write_bytes_atomic(pointer, f"{digest}\n".encode())
    return True


def latest_snapshot(features_dir: UPath, family: str, region: str) -> SnapshotMeta:
    """The newest valid snapshot of (family, region).

    Raises:
        SnapshotNotFoundError: none has been published; the message says how to make one.
    """
    folder = snapshot_dir(features_dir, family, region)
    pointer = read_text(folder / LATEST)
    if pointer is None:
        raise SnapshotNotFoundError(
            f"no valid snapshot for family '{family}', region '{region}' under {folder} "
            f"(run `modelyard data build --family {family} --region {region}` first)"
        )
    return read_snapshot(features_dir, family, region, pointer.strip())


def list_snapshots(features_dir: UPath, family: str, region: str) -> list[SnapshotMeta]:
    """Every published snapshot of (family, region), newest first (by ``created_at``)."""
    folder = snapshot_dir(features_dir, family, region)
    if not folder.exists():
        return []
    found = []
    for meta_file in folder.glob("*.json"):
        text = read_text(meta_file)
        if text is not None:
            found.append(SnapshotMeta.model_validate_json(text))
    return sorted(found, key=lambda meta: meta.created_at, reverse=True)


def latest_digest(features_dir: UPath, family: str, region: str) -> str | None:
    """The digest ``LATEST`` points at, or None when nothing was published."""
    pointer = read_text(snapshot_dir(features_dir, family, region) / LATEST)
    return pointer.strip() if pointer is not None else None


def point_latest(features_dir: UPath, family: str, region: str, digest: str | None = None) -> tuple[str, SnapshotMeta]:
    """Point (family, region)'s ``LATEST`` at snapshot ``digest`` (a unique prefix will do), by default the
    one published before the current ``LATEST``. Returns the digest it pointed at before and the snapshot.

    Raises:
        SnapshotNotFoundError: no such snapshot, a prefix that names several, or nothing older to go back to.
    """
    snapshots = list_snapshots(features_dir, family, region)
    current = latest_digest(features_dir, family, region)
    pair = f"{family}/{region}"
    if not snapshots or current is None:
        raise SnapshotNotFoundError(f"{pair} has no published snapshot; run `modelyard data build` first")
    if digest is None:
        digests = [meta.digest for meta in snapshots]
        older = digests[digests.index(current) + 1 :] if current in digests else []
        if not older:
            raise SnapshotNotFoundError(f"{pair}: LATEST {current} is its oldest snapshot; there is none to go back to")
        chosen = next(meta for meta in snapshots if meta.digest == older[0])
    else:
        matches = [meta for meta in snapshots if meta.digest.startswith(digest)]
        if len(matches) != 1:
            known = ", ".join(meta.digest for meta in snapshots)
            what = "no snapshot" if not matches else f"{len(matches)} snapshots"
            raise SnapshotNotFoundError(f"{pair}: {what} with digest {digest!r} (its snapshots: {known})")
        chosen = matches[0]
    if not chosen.validation.success:
        raise SnapshotNotFoundError(f"{pair}: snapshot {chosen.digest} did not pass validation")
    _point_latest(snapshot_dir(features_dir, family, region), chosen.digest)
    return current, chosen


def read_snapshot(features_dir: UPath, family: str, region: str, digest: str) -> SnapshotMeta:
    """The metadata of one snapshot by digest."""
    meta_file = snapshot_dir(features_dir, family, region) / f"{digest}.json"
    text = read_text(meta_file)
    if text is None:
        raise SnapshotNotFoundError(
            f"snapshot {digest} of family '{family}', region '{region}' not found ({meta_file}); "
            f"`modelyard data snapshots -f {family} -r {region}` lists what there is (`modelyard prune` removes "
            "snapshots no registered version was trained on)"
        )
    return SnapshotMeta.model_validate_json(text)


def load_frame(features_dir: UPath, meta: SnapshotMeta) -> pd.DataFrame:
    """The snapshot's rows."""
    import pandas as pd

    with meta.path(features_dir).open("rb") as handle:
        return pd.read_parquet(handle)
