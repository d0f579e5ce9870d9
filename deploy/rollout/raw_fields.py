"""The raw fields a rollout asks clients to send, and the guard against fields nobody sends (issue 21).

A version takes raw rows through its own ``feature_spec.json``: the raw columns its features read
and the window aggregates a request carries (online ones are looked up, not sent); a version
without one (registered from a notebook) takes the columns of its MLmodel signature. When a
rollout (any strategy: a rolling one swaps every client at once) moves a pair from the version it
serves to one that reads other raw fields, the plan says which fields clients must send for the
new version; and when the new version needs a field live clients are not sending, the planner
refuses the rollout unless forced (``modelyard deploy --force``, the deploy DAG's ``force`` param).

"Live clients are not sending" a field: the served version does not take it, and no request
sampled for that pair in the monitoring window (the prediction log,
``core.contracts.prediction_log``), whichever version answered it, carried it. A rollback to the
version that served before is then not refused for fields its clients sent a moment ago (the version
rolled back from has few samples yet). Without a prediction log, only the served version's fields
count as sent.

``compare`` is the pure rule; ``check_rollout`` reads the specs from the registry and the
samples from storage and applies it to every changed service of a proposal.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

from modelyard.core.contracts import prediction_log
from modelyard.deploy.rollout.planner import SHADOW, PlannerError, pinned_ref, primary_variant

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from upath import UPath

    from modelyard.core.config import Config
    from modelyard.deploy.rollout.planner import PlanOptions
    from modelyard.deploy.serving.plan import Plan, Service

log = logging.getLogger("modelyard.deploy")

SPEC_TAG = "feature_spec"  # the version tag naming its run's spec artifact (training.mlflow_log)
FieldsOf = Callable[[str, str], "list[str] | None"]  # (model name, version) -> raw fields
SeenOf = Callable[[str, str, str], "set[str] | None"]  # (family, region, version) -> fields sampled requests carried


class VersionGone(PlannerError):
    """The version is no longer in the registry (deleted, e.g. in the MLflow UI, while it served)."""


@dataclass(frozen=True)
class RawFieldChange:
    """How the raw fields of one pair's new version differ from the version it serves.

    ``unsent``: fields the new version needs that live clients are not sending (the refusal).
    """

    key: str
    served: str  # "v3"
    new: str  # "v4"
    needed: tuple[str, ...]
    added: tuple[str, ...]
    dropped: tuple[str, ...]
    unsent: tuple[str, ...]

    def note(self) -> str:
        """One line for the plan output, e.g. ``v4 needs a, b, c (new: c; no longer read: d)``."""
        parts = [f"new: {', '.join(self.added)}"] if self.added else []
        parts += [f"no longer read: {', '.join(self.dropped)}"] if self.dropped else []
        detail = f" ({'; '.join(parts)})" if parts else ""
        return f"clients must send {', '.join(self.needed) or 'no raw field'} for {self.new}{detail}"

    def refusal(self) -> str:
        return (
            f"{self.key}: {self.new} needs raw field(s) {', '.join(self.unsent)} that live clients of {self.served} "
            "are not sending (not read by the served version, not seen in the pair's sampled requests of the "
            "monitoring window), so their "
            "requests would be refused with 422; send them first, or change the family's features so the "
            "version does not need them (a window aggregate can be 'online: true' with a 'default', looked up "
            "instead of sent) and retrain, or deploy with --force (the deploy DAG's 'force' param)"
        )


def compare(
    key: str, served: tuple[str, Iterable[str]], new: tuple[str, Iterable[str]], seen: Iterable[str] | None
) -> RawFieldChange | None:
    """The change from ``served`` to ``new`` (each ``(label, fields)``); None when both need the same fields.

    ``seen``: the field names live requests carried (None: no prediction log to look at).
    """
    old_fields, new_fields = list(served[1]), list(new[1])
    if set(old_fields) == set(new_fields):
        return None
    sent = set(old_fields) | set(seen or ())
    return RawFieldChange(
        key=key,
        served=served[0],
        new=new[0],
        needed=tuple(new_fields),
        added=tuple(f for f in new_fields if f not in old_fields),
        dropped=tuple(f for f in old_fields if f not in new_fields),
        unsent=tuple(f for f in new_fields if f not in sent),
    )


def check_rollout(
    client: MlflowClient, config: Config, live: Plan | None, plan: Plan, options: PlanOptions
) -> dict[str, str]:
    """``family/region`` -> what clients must send, for every service whose versions need other raw fields.

    Raises:
        PlannerError: a new version needs a raw field live clients are not sending and ``options.force`` is off;
            or a version's spec cannot be read.
    """
    if live is None:
        return {}
    with TemporaryDirectory(prefix="modelyard-spec-") as folder:
        changes = raw_field_changes(
            live,
            plan,
            lambda name, version: version_fields(client, name, version, Path(folder)),
            lambda family, region, version: sent_fields(config, family, region, version),
        )
    return guard(changes, force=options.force)


def raw_field_changes(live: Plan, plan: Plan, fields_of: FieldsOf, seen_of: SeenOf) -> list[RawFieldChange]:
    """The raw-field change of every service of ``plan`` that brings in another version than ``live`` serves.

    ``fields_of(model, version)``: the version's raw fields (None: no spec, nothing to compare);
    ``seen_of(family, region, version)``: the fields its sampled requests carried (None: no log).
    """
    before = {f"{s.family}/{s.region}": s for s in live.services}
    changes = []
    for service in plan.services:
        key = f"{service.family}/{service.region}"
        old = before.get(key)
        served, new = (pinned_ref(primary_variant(old).model_uri) if old else None), pinned_ref(_new_uri(service))
        if served is None or new is None or served == new:
            continue
        served_label, new_label = _labels(served, new)
        try:
            old_fields, gone = fields_of(*served), None
        except VersionGone as exc:
            old_fields, gone = [], exc
        new_fields = fields_of(*new)
        if old_fields is None or new_fields is None:
            continue  # no named inputs (a tensor signature, or none): nothing to compare
        seen = seen_of(service.family, service.region, served[1])  # read the prediction log only when comparing
        if gone is not None:
            if seen is None:
                log.warning("raw fields %s: %s; no sampled requests to compare the new version with", key, gone)
                continue
            old_fields = sorted(seen)  # what its clients were seen sending is all that is left of it
            served_label += " (no longer in the registry: the fields its sampled requests carried)"
        change = compare(key, (served_label, old_fields), (new_label, new_fields), seen)
        if change is not None:
            changes.append(change)
    return changes


def guard(changes: list[RawFieldChange], *, force: bool) -> dict[str, str]:
    """The plan notes of ``changes`` (logged); forced refusals are logged as warnings.

    Raises:
        PlannerError: some change has fields live clients are not sending and ``force`` is off (names them all).
    """
    for change in changes:
        log.info("raw fields %s: %s", change.key, change.note())
    refusals = [change.refusal() for change in changes if change.unsent]
    if refusals and not force:
        raise PlannerError("rollout refused: " + "; ".join(refusals))
    for refusal in refusals:
        log.warning("forced: %s", refusal)
    return {change.key: change.note() for change in changes}


def _new_uri(service: Service) -> str:
    """The version a rollout brings in: the shadow under the shadow strategy, else the primary."""
    shadow = next((s for s in service.shadows if s.name == SHADOW), None)
    return shadow.model_uri if shadow else primary_variant(service).model_uri


def _labels(served: tuple[str, str], new: tuple[str, str]) -> tuple[str, str]:
    """``("v3", "v4")``; with the model names when they differ (a region moving to its group's pooled model)."""
    if served[0] == new[0]:
        return f"v{served[1]}", f"v{new[1]}"
    return f"{served[0]} v{served[1]}", f"{new[0]} v{new[1]}"


def version_fields(client: MlflowClient, name: str, version: str, folder: Path) -> list[str] | None:
    """The raw fields a client sends to ``name`` v``version`` (raw columns, then sent window aggregates).

    A version without a feature spec (registered from a notebook) reads the columns of its MLmodel
    signature; None when it names none (a tensor signature, or no signature).

    Raises:
        VersionGone: the version is not in the registry (any more).
        PlannerError: the spec or the MLmodel cannot be downloaded or read.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from modelyard.core.featurespec import FeatureSpecError, FittedSpec

    try:
        meta = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise VersionGone(f"model '{name}' v{version} is no longer in the registry") from exc
        raise PlannerError(f"model '{name}' v{version}: cannot read it to compare raw fields: {exc}") from exc
    try:
        artifact = (meta.tags or {}).get(SPEC_TAG)
        if not artifact or not meta.run_id:
            return signature_fields(client, name, version, folder / f"{name}-{version}")
        path = mlflow.artifacts.download_artifacts(
            run_id=meta.run_id,
            artifact_path=artifact,
            dst_path=str(folder / f"{name}-{version}"),
            tracking_uri=client.tracking_uri,  # this client's server, not MLflow's current one
        )
        fitted = FittedSpec.from_dict(json.loads(Path(path).read_text()))
    except (MlflowException, OSError, FeatureSpecError, ValueError, KeyError, TypeError) as exc:
        raise PlannerError(
            f"model '{name}' v{version}: cannot read its feature spec to compare raw fields: {exc}"
        ) from exc
    online = {f.name for f in fitted.online}
    return [*fitted.raw_inputs, *(field for field in fitted.requested if field not in online)]


def signature_fields(client: MlflowClient, name: str, version: str, folder: Path) -> list[str] | None:
    """The input column names of the version's MLmodel signature (what the server reads without a spec), or None.

    Only the ``MLmodel`` file is fetched, from where the registry says the version's files are.
    """
    from mlflow.models import Model

    from modelyard.core.model_files import download_model_file

    signature = Model.load(str(download_model_file(name, version, "MLmodel", folder, client))).signature
    if signature is None or not signature.inputs.has_input_names():
        return None
    return list(signature.inputs.input_names())


def sent_fields(config: Config, family: str, region: str, version: str) -> set[str] | None:
    """The record fields sampled requests to ``family/region`` carried in the monitoring window.

    Those answered by ``version`` (the served one) and by any other version of the pair in the
    window: a pair rolled back to the version it served an hour ago has few samples of the version
    rolled back from, and its clients' requests to the one before carried what they still send.
    None when no sample could be read (no prediction log, or samples without records).
    """
    pair = config.storage.samples_dir / family / region
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=config.monitoring.window_hours)
    try:
        if not pair.is_dir():
            return None
        folders = [pair / version, *(f for f in sorted(pair.iterdir()) if f.name != version and f.is_dir())]
        seen = [fields for folder in folders if folder.is_dir() and (fields := records_fields(folder, since))]
    except (OSError, EOFError) as exc:
        log.warning("%s: prediction log unreadable (%s); only the served version's fields count as sent", pair, exc)
        return None
    return set().union(*seen) if seen else None


def records_fields(folder: UPath, since: dt.datetime) -> set[str] | None:
    """The union of the record keys of the served predictions logged in ``folder`` since ``since``."""
    seen: set[str] | None = None
    for path in sorted(folder.glob(f"*{prediction_log.SUFFIX}")):
        if path.stat().st_mtime < since.timestamp():
            continue
        with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as handle:
            for line in handle:
                entry = prediction_log.parse_line(line)
                if entry is None or entry.get("kind") != prediction_log.PREDICTION:
                    continue
                for record in entry.get("records") or []:
                    if isinstance(record, Mapping):
                        seen = (seen or set()) | set(record)
    return seen
