"""Graduation is rolled out as a canary: a region leaves its pooled fallback for a model of its own (ADR 0015).

A region served by its group's pooled champion gets its first champion of its own: the planner
then serves it from that model (the plan's ``fallback.<family>/<region>`` entry goes away), and
the region's service changes model, from one trained on the whole group to one trained on the
region's own, fewer, rows. That switch is a canary by default: under the ``rolling`` strategy (the
default), each graduating service goes through ``deploy.rollout.canary_steps``, the pooled model
keeping ``primary`` and the region's own model taking the ``canary`` share, analysed like any canary
and rolled back to the live plan (the pooled model) on a breach; the plan's other changes are applied
with the first step. A strategy chosen other than rolling is kept as it is: canary already is one,
blue-green and shadow are deliberate choices.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.deploy.rollout.planner import Strategy, fallbacks_of
from modelyard.deploy.rollout.strategies import ServiceKey, Step, canary_plan, changed_services, plan_steps
from modelyard.deploy.serving.plan import Plan


def graduations(live: Plan | None, target: Plan) -> list[ServiceKey]:
    """The services ``live`` serves by a pooled fallback and ``target`` by a model of their own, sorted."""
    if live is None:
        return []
    before, after = fallbacks_of(live), fallbacks_of(target)
    changed = changed_services(live, target)
    return sorted(
        service.key
        for service in target.services
        if service.key in changed and _name(service.key) in before and _name(service.key) not in after
    )


def rollout_steps(strategy: Strategy, live: Plan | None, target: Plan, canary_steps: Iterable[int]) -> list[Step]:
    """The strategy's steps from ``live`` to ``target``; under ``rolling``, graduating services as a canary."""
    weights = list(canary_steps)
    graduating = graduations(live, target)
    if strategy != "rolling" or live is None or not graduating:
        return plan_steps(strategy, live, target, weights)
    base = _graduating_as_live(live, target, graduating)
    steps = [
        Step(f"graduation canary {weight}%", canary_plan(base, target, weight), tuple(graduating))
        for weight in weights
        if weight < 100
    ]
    return [*steps, Step("promote 100%", target)]


def _graduating_as_live(live: Plan, target: Plan, graduating: list[ServiceKey]) -> Plan:
    """``target`` with the graduating services as ``live`` serves them: the canary's baseline."""
    services = []
    for service in target.services:
        old = live.service(*service.key) if service.key in graduating else None
        services.append(old or service)
    return target.model_copy(update={"services": services})


def _name(key: ServiceKey) -> str:
    return f"{key[0]}/{key[1]}"
