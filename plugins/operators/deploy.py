"""``DeployReleaseOperator``: deploy one release, deferring the rollout's long waits.

The task plans the release and applies the first step on the worker; whenever the rollout
must wait — the pods of a Helm upgrade rolling out, a canary analysis window — it defers to
``RolloutReadyTrigger`` / ``CanaryAnalysisTrigger`` with the deploy's checkpoint, and the
worker slot is free until the trigger fires. It resumes in ``resume`` from the event alone
(the checkpoint rides in it), applies the next step or rolls back, and at the end records
``modelyard://deployed/<release>`` or fails with the reason.

Every deferral has an Airflow-level timeout: the wait's own deadline plus ``DEFER_GRACE_SECONDS``.
It fires only if the triggerer never answered (stopped, or lost the trigger). The checkpoint is
also kept in the task's XCom (Airflow keeps a deferred task's XComs until it resumes), so a timed
out wait resumes like a failed one: the rollout rolls back instead of leaving a canary half-way.

An operator and not ``@task``: TaskFlow tasks cannot defer (Airflow 3.3's ``self.defer`` and
``resume_execution`` are ``BaseOperator`` methods; the decorated callable has no ``self``).
The Kubernetes clients come from ``KubernetesHook`` and ``HelmHook`` (``kubernetes_conn_id``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from modelyard.plugins.dag_support import expected_errors_fail_the_task

if TYPE_CHECKING:
    from airflow.sdk import Context

    from modelyard.core.config import Config
    from modelyard.deploy.rollout.kube_deploy import TargetFactory
    from modelyard.deploy.rollout.request import DeployRequest
    from modelyard.deploy.rollout.staged_deploy import StagedDeploy
    from modelyard.deploy.rollout.strategies import Target, Wait


# Past a wait's own deadline, how long Airflow waits for the trigger before timing it out.
DEFER_GRACE_SECONDS = 120.0
CHECKPOINT_XCOM_KEY = "modelyard_rollout_wait"
TRIGGER_TIMEOUT = "Trigger timeout"  # airflow.models.trigger.TriggerFailureReason.TRIGGER_TIMEOUT


def defer_timeout(wait_spec: Mapping[str, Any], now: float | None = None) -> dt.timedelta:
    """The Airflow-level timeout of a deferred wait: its deadline (epoch seconds) plus a grace."""
    now = time.time() if now is None else now
    return dt.timedelta(seconds=max(0.0, float(wait_spec["deadline"]) - now) + DEFER_GRACE_SECONDS)


class DeployReleaseOperator(BaseOperator):
    """Deploy ``item`` (``{"release", "request"}`` from ``select_releases``) with deferred waits.

    Args:
        item: The release and the resolved ``DeployRequest`` as JSON (templated; mapped by ``expand``).
        kubernetes_conn_id: The cluster of the ``kubernetes`` target.
        deferrable: Defer the waits (default); False waits on the worker, like the CLI.
        poll_seconds: How often a canary window is judged.
    """

    template_fields: Sequence[str] = ("item", "kubernetes_conn_id")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        item: dict[str, Any],
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool = True,
        poll_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.item = item
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deferrable = deferrable
        self.poll_seconds = poll_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        from modelyard.deploy.rollout.apply import stage_release
        from modelyard.deploy.rollout.request import DeployRequest

        release = self.item["release"]
        context["release_label"] = release  # type: ignore[typeddict-unknown-key]
        request = DeployRequest.model_validate(self.item["request"])
        config = _config()
        # A plan that cannot be built (a version that does not exist, a bad option) fails at once:
        # a retry builds the same plan. An unreachable server is a ConnectionError and is retried.
        with expected_errors_fail_the_task():
            staged = stage_release(config, request, release, _tracking_uri(config), self._kube_targets(config, request))
        return self._go_on(context, staged, None)

    def resume(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Called by Airflow when a trigger fired: go on from its outcome."""
        from modelyard.deploy.rollout.apply import release_target
        from modelyard.deploy.rollout.request import DeployRequest
        from modelyard.deploy.rollout.staged_deploy import StagedDeploy

        checkpoint = event["checkpoint"]
        release = checkpoint["result"]["release"]
        context["release_label"] = release  # type: ignore[typeddict-unknown-key]
        request = DeployRequest.model_validate(checkpoint["request"])
        config = _config()
        target = release_target(config, request, release, _tracking_uri(config), self._kube_targets(config, request))
        staged = StagedDeploy.restore(target, checkpoint)
        return self._go_on(context, staged, event["outcome"], target)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """As Airflow's, except that a timed-out deferral resumes from the kept checkpoint as a failed wait."""
        from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR

        from modelyard.deploy.rollout.strategies import timed_out_outcome

        if next_method == TRIGGER_FAIL_REPR and (next_kwargs or {}).get("error") == TRIGGER_TIMEOUT:
            ti = context["ti"]
            kept = ti.xcom_pull(task_ids=ti.task_id, key=CHECKPOINT_XCOM_KEY, map_indexes=ti.map_index)
            if kept:
                self.log.error("deferred %s wait timed out in Airflow; rolling back", kept["kind"])
                event = {"checkpoint": kept["checkpoint"], "outcome": timed_out_outcome(kept["kind"])}
                return self.resume(context, event)
        return super().resume_execution(next_method, next_kwargs, context)

    def _go_on(
        self, context: Context, staged: StagedDeploy, outcome: dict[str, Any] | None, target: Target | None = None
    ) -> dict[str, Any]:
        rollout = staged.rollout
        if rollout is not None:
            wait = rollout.advance(outcome)
            if wait is not None and self.deferrable:
                self.log.info("release %s: %s; deferring (%s)", staged.result.release, rollout.records[-1:], wait.kind)
                trigger = self._trigger(staged, wait, target or rollout.target)
                context["ti"].xcom_push(CHECKPOINT_XCOM_KEY, {"kind": wait.kind, "checkpoint": trigger.checkpoint})
                self.defer(trigger=trigger, method_name="resume", timeout=defer_timeout(wait.spec))
            if wait is not None:
                rollout.run()  # wait here, like the CLI
        return self._report(context, staged)

    def _trigger(self, staged: StagedDeploy, wait: Wait, target: Target) -> Any:
        from modelyard.plugins.triggers.rollout import CanaryAnalysisTrigger, RolloutReadyTrigger

        checkpoint = staged.checkpoint()
        if wait.kind == "ready":
            return RolloutReadyTrigger(wait.spec, checkpoint, self.kubernetes_conn_id)
        source = getattr(target, "metrics_source", None)
        where = source() if source is not None else {"kind": "http", "url": f"{target.url}/metrics"}  # type: ignore[attr-defined]
        return CanaryAnalysisTrigger(wait.spec, where, checkpoint, self.kubernetes_conn_id, self.poll_seconds)

    def _kube_targets(self, config: Config, request: DeployRequest) -> TargetFactory | None:
        """Helm release targets on the clients of ``KubernetesHook``/``HelmHook`` (None for ``local``)."""
        if request.target != "kubernetes":
            return None
        from modelyard.deploy.rollout.kube_deploy import chart_path, helm_targets
        from modelyard.plugins.hooks.helm import HelmHook

        settings = config.deploy.kubernetes
        helm = HelmHook(self.kubernetes_conn_id, timeout_seconds=settings.timeout_seconds)
        # Without --wait helm returns once the objects are written; the trigger watches the pods.
        releaser = helm.get_releases(settings.namespace, chart_path(config), wait=not self.deferrable)
        return helm_targets(config, api=helm.kubernetes.get_conn(), releaser=releaser)

    def _report(self, context: Context, staged: StagedDeploy) -> dict[str, Any]:
        from airflow.sdk import Asset
        from airflow.sdk.exceptions import AirflowFailException
        from rich.console import Console

        from modelyard.core.contracts.assets import deployed_uri
        from modelyard.deploy.rollout.render import render_deploy

        result = staged.result_so_far()
        Console(width=160).print(render_deploy(result))
        if not result.ok:
            # Not retried: the same plan would roll back again; the old plan serves.
            raise AirflowFailException(f"release {result.release}: {result.outcome}: {result.reason}")
        if result.outcome != "dry-run":
            for outlet in self.outlets:
                context["outlet_events"][outlet].add(Asset(deployed_uri(result.release)), extra=result.asset_extra())
        return result.model_dump(mode="json", include={"release", "outcome", "plan_digest", "versions", "url"})


def _config() -> Config:
    from modelyard.plugins.dag_support import config

    return config()


def _tracking_uri(config: Config) -> str:
    from modelyard.plugins.hooks.mlflow import MlflowHook

    return MlflowHook(config=config).get_tracking_uri()
