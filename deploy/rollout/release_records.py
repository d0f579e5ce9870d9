"""The Kubernetes releases modelyard has deployed, recorded in shared storage (ADR 0036).

A prune that deletes model versions must read the plan of every revision of every release that
may serve one. ``deploy.kubernetes.releases`` alone does not say which those are: the deploy
form and ``modelyard deploy --target kubernetes`` deploy to a cluster while ``deploy.target``
says ``local``, and a release dropped from the map (or deployed to another namespace before the
config changed) keeps serving until someone uninstalls it. So every deploy to Kubernetes first
records its release under ``<storage.root>/deploy/kubernetes/<namespace>/<release>.json``,
before it changes anything, and the prune reads those releases too. A record is written once
and never removed: a release uninstalled since has no history, which names nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upath import UPath

    from modelyard.core.config import Config


def records_dir(config: Config) -> UPath:
    """``<storage.root>/deploy/kubernetes``: one folder per namespace, one file per release."""
    return config.storage.root / "deploy" / "kubernetes"


def record(config: Config, release: str) -> None:
    """Note that modelyard deploys ``release`` in ``deploy.kubernetes.namespace`` (once; later calls keep the first).

    Raises:
        OSError: the record cannot be written to storage.
    """
    namespace = config.deploy.kubernetes.namespace
    path = records_dir(config) / namespace / f"{release}.json"
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    first = {"namespace": namespace, "release": release, "recorded": dt.datetime.now(dt.UTC).isoformat()}
    path.write_text(json.dumps(first))


def recorded(config: Config) -> dict[str, list[str]]:
    """``{namespace: [release, ...]}`` of every release a deploy recorded (sorted).

    Raises:
        OSError: the records cannot be listed.
    """
    folder = records_dir(config)
    if not folder.exists():
        return {}
    found: dict[str, list[str]] = defaultdict(list)
    for namespace in sorted(folder.iterdir(), key=lambda path: path.name):
        if namespace.is_dir():
            found[namespace.name] = sorted(path.stem for path in namespace.glob("*.json"))
    return {namespace: releases for namespace, releases in found.items() if releases}
