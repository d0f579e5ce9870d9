"""``modelyard demo-graduation``, the third act: the new market's data grows and its own model takes over.

Act one left :data:`~modelyard.deploy.devstack.new_market.NEW_REGION` with too few bookings for a
model of its own, served by its country's pooled model. This act removes its entry from
``data.synthetic.rows_by_region`` in the config overlay (the region now has ``data.synthetic.rows``
bookings), re-runs the chain for that region under a background load, and prints the graduation
gate (own model against the pooled model on the region's holdout, ADR 0015), how many requests each
model answered during the rollout (the graduation canary: rolling deploys roll a graduating region
out as a canary) and what serves the region at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.core.config import Config
from modelyard.deploy.devstack.chain import trigger_chain
from modelyard.deploy.devstack.demo import start_stack
from modelyard.deploy.devstack.festival import BackgroundLoad, LoadStats
from modelyard.deploy.devstack.new_market import (
    decision_lines,
    graduation_decisions,
    market_lines,
    new_region,
    requests_by_variant,
    require_fallback,
    set_region_rows,
)
from modelyard.deploy.devstack.progress import follow_chain
from modelyard.deploy.devstack.stack import StackError, StackSettings

if TYPE_CHECKING:
    from rich.console import Console


def run_graduation(config: Config, settings: StackSettings, console: Console, timeout: float = 3600) -> LoadStats:
    """The new region's data grows → its own model trains → graduation gate → canary under load.

    Raises:
        StackError: the config has no new market, the region is not served by a pooled model (run
            ``demo`` first), a task failed, or the chain timed out.
    """
    from rich.markup import escape
    from rich.panel import Panel

    region = new_region(config)
    if region is None:
        raise StackError("the config has no region to graduate: the demo's new market is surabaya, in country ID")
    api = start_stack(config, settings, console)
    require_fallback(config, settings.serving_url, region)
    set_region_rows(settings.overlay_path, region, None)
    overlay_path = escape(str(settings.overlay_path))
    console.print(
        f"{region}'s data grows to {config.data.synthetic.rows} bookings (overlay {overlay_path}): "
        "its own model trains and must beat the pooled model on its holdout to take over"
    )
    pairs = [(family, region) for family in config.family_names]
    before = requests_by_variant(settings.serving_url, region)
    with BackgroundLoad(config, settings.serving_url, pairs) as load:
        since = trigger_chain(api, conf={"regions": [region]}, note=f"{region} graduates")
        follow_chain(api, since, console, timeout=timeout, extra_view=load.view)
    decisions = graduation_decisions(config, settings.mlflow_url, region)
    console.print(Panel("\n".join(decision_lines(decisions) or ["no decision recorded"]), title="graduation gate"))
    after = requests_by_variant(settings.serving_url, region)
    answered = [f"{key}: {n - before.get(key, 0)} ok" for key, n in sorted(after.items()) if n > before.get(key, 0)]
    failed = f"{load.stats.failed} failed" + (f" {dict(load.stats.errors)}" if load.stats.errors else "")
    answered.append(f"[{'green' if load.stats.failed == 0 else 'red'}]{failed}[/]")
    # Pooled and own model may share a version number: during the canary steps primary is the pooled model.
    title = "requests during the rollout: canary = own model beside the pooled primary, then primary"
    console.print(Panel("\n".join(answered), title=title))
    console.print(Panel("\n".join(market_lines(config, settings.serving_url, region)), title=f"{region} now"))
    return load.stats
