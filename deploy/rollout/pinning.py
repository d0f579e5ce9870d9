"""Pin each model a plan names to its version's source in the registry (the logged model it was made from).

A registered model deleted and registered again numbers its versions from 1 again: ``models:/x/1``
then names another model than the one a live plan serves under that URI. The deploy stage writes
the registry's ``source`` of every version into the plan (``Variant.source``, ``Shadow.source``), so
the plan's digest changes when the model behind a URI does, the server loads it again instead of
reusing what it holds, and a server that restarts on an old plan refuses a version whose source
moved instead of quietly serving another model (ADR 0027).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from modelyard.deploy.rollout.planner import pinned_ref

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.deploy.rollout.planner import PlanProposal
    from modelyard.deploy.serving.plan import Plan, Shadow, Variant

Ref = TypeVar("Ref", "Variant", "Shadow")


def pin_sources(client: MlflowClient, proposal: PlanProposal, live: Plan | None) -> PlanProposal:
    """``proposal`` with every planned model reference pinned to its version's registry source.

    The versions are read in a few paginated searches (``core.catalog.versions_of``). Services kept
    from ``live`` (outside the selection) keep what they had; a version the registry no longer has
    keeps the source ``live`` pinned for its URI (none if it pinned none).
    """
    from dataclasses import replace

    from modelyard.core.catalog import versions_of

    plan = proposal.plan
    wanted: dict[str, set[str]] = {}
    for uri in plan.model_uris():
        if ref := pinned_ref(uri):
            wanted.setdefault(ref[0], set()).add(ref[1])
    found = versions_of(client, wanted)
    pinned_live = live.model_sources() if live is not None else {}
    kept = set(proposal.kept)

    def pin(ref: Ref) -> Ref:
        pinned = pinned_ref(ref.model_uri)
        version = found.get(pinned) if pinned else None
        source = (version.source if version is not None else None) or pinned_live.get(ref.model_uri)
        return ref if source == ref.source else ref.model_copy(update={"source": source})

    services = [
        service
        if f"{service.family}/{service.region}" in kept
        else service.model_copy(
            update={"variants": [pin(v) for v in service.variants], "shadows": [pin(s) for s in service.shadows]}
        )
        for service in plan.services
    ]
    skipped = dict(proposal.skipped)
    for service in plan.services:  # kept from live because nothing replaces it, on a version that is gone
        key = f"{service.family}/{service.region}"
        gone = [ref for uri in service.model_uris() if (ref := pinned_ref(uri)) and ref not in found]
        if key in kept and key in skipped and gone:
            versions = ", ".join(f"{name} v{version}" for name, version in gone)
            skipped[key] += (
                f"; it keeps serving {versions}, which the registry no longer has: a restarted server "
                "cannot load this plan, so promote another version and deploy"
            )
    return replace(proposal, plan=plan.model_copy(update={"services": services}), skipped=skipped)
