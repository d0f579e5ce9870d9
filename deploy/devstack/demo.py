"""``modelyard demo``, the first act: the whole chain on a real Airflow and MLflow.

It starts the embedded stack (``deploy.devstack.stack``), unpauses the stages' DAGs,
triggers ``data_processing`` through the Airflow REST API and follows the asset-driven chain
(features → training → promotion → deploy) with a live view (``deploy.devstack.progress``)
until nothing is left to run. A failed task stops it with that task's log excerpt (exit 1).
At the end it prints the champions, what the endpoint serves, the URLs, the Airflow login
and a curl example. The demo's new market (``deploy.devstack.new_market``) starts with too little
data for a model of its own: the summary says which pooled model serves it. The commands themselves
are in ``deploy.devstack.commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.core.config import Config
from modelyard.deploy.devstack.chain import trigger_chain
from modelyard.deploy.devstack.endpoint import curl_example, serving_versions
from modelyard.deploy.devstack.new_market import market_lines, new_region, start_small
from modelyard.deploy.devstack.progress import follow_chain
from modelyard.deploy.devstack.stack import AIRFLOW_PASSWORD, AIRFLOW_USER, AirflowApi, StackError, StackSettings

if TYPE_CHECKING:
    from rich.console import Console

    from modelyard.promotion.status import Fallback


def start_stack(config: Config, settings: StackSettings, console: Console) -> AirflowApi:
    """Start (or reuse) the stack, bring serving back on the last deployed plan, wait for the DAGs."""
    from modelyard.deploy.devstack.stack import resume_serving, serving_target, up

    with console.status("starting MLflow and Airflow (the first start migrates Airflow's database: ~1 min)"):
        urls = up(settings, config=config)
    console.print(f"[green]MLflow[/green] {urls.mlflow}   [green]Airflow[/green] {urls.airflow}")
    with console.status("restarting the serving process on the last deployed plan"):
        resumed = resume_serving(serving_target(config, settings))
    if resumed is not None:
        console.print(f"[green]Serving[/green] {urls.serving}   (plan {resumed.digest()[:19]}, as last deployed)")
    api = AirflowApi(urls.airflow)
    with console.status("waiting for the DAG processor to parse the DAGs"):
        api.wait_for_dags()
    return api


def print_summary(config: Config, settings: StackSettings, console: Console) -> dict[str, str]:
    """Champions, what the endpoint serves, the URLs, the login and a curl example."""
    from rich.panel import Panel

    from modelyard.promotion.render import render_status
    from modelyard.promotion.status import collect_status

    statuses = collect_status(config, tracking_uri=settings.mlflow_url)
    console.print(render_status(statuses))
    served = serving_versions(config, settings.serving_url)
    champions = {f"{s.family}/{s.region}": s.champion.version for s in statuses if s.champion}
    fallbacks = {f"{s.family}/{s.region}": s.fallback for s in statuses if s.fallback and not s.champion}
    lines = [serving_line(key, version, champions.get(key), fallbacks.get(key)) for key, version in served.items()]
    console.print(Panel("\n".join(lines), title="serving endpoint", expand=False))
    region = new_region(config)
    if region is not None:
        market = market_lines(config, settings.serving_url, region)
        console.print(Panel("\n".join(market), title=f"new market: {region}", expand=False))
    print_endpoints(console, settings, curl_example(config, settings.serving_url))
    return served


def print_endpoints(console: Console, settings: StackSettings, curl: str) -> None:
    """The URLs and login in a panel, then ``curl`` on a line of its own, as it must be pasted.

    A panel wraps a long line between its borders, so a command printed inside one cannot be copied:
    the curl call is printed after it, unwrapped (the terminal folds it) and without markup.
    """
    from rich.panel import Panel

    console.print(
        Panel(
            f"Airflow UI   {settings.airflow_url}   (login {AIRFLOW_USER} / {AIRFLOW_PASSWORD})\n"
            f"MLflow UI    {settings.mlflow_url}\n"
            f"Serving      {settings.serving_url}   (/readyz, /metrics)\n\n"
            "Stop everything with: modelyard down",
            title="the stack is up",
            expand=False,
        )
    )
    console.print("Try the endpoint:")
    console.print(curl, soft_wrap=True, markup=False, highlight=False)


def serving_line(key: str, version: str, champion: str | None, fallback: Fallback | None) -> str:
    """``family/region: serving vN``, saying when that is a pooled fallback or not the champion."""
    if fallback is not None and fallback.version == version:
        return f"{key}: serving v{version} of {fallback.model_name} (no champion of its own; {fallback})"
    return f"{key}: serving v{version}" + ("" if champion == version else " [red](not the champion)[/red]")


def run_demo(config: Config, settings: StackSettings, console: Console, timeout: float = 3600) -> None:
    """``modelyard demo``: up, trigger, follow, summarize.

    Raises:
        StackError: the stack did not start, a task failed (with its log), or the chain timed out.
    """
    api = start_stack(config, settings, console)
    start_small(config, settings, console)
    since = trigger_chain(api, note="modelyard demo")
    console.print(f"triggered data_processing; following the chain (Airflow UI: {settings.airflow_url})")
    follow_chain(api, since, console, timeout=timeout)
    served = print_summary(config, settings, console)
    not_serving = sorted(key for key, version in served.items() if not version.isdigit())
    if not_serving:
        raise StackError(
            f"the chain finished but nothing serves {', '.join(not_serving)}: no champion passed the gates "
            "(see the status table above and the promotion task logs), or the deploy stage did not run"
        )
