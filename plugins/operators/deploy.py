"""``DeployReleaseOperator``: deploy one release, deferring the rollout's long waits.

The task plans the release and applies the first step on the worker; whenever the rollout
must wait — the pods of a Helm upgrade rolling out, a canary analysis window — it defers to
``RolloutReadyTrigger`` / ``CanaryAnalysisTrigger`` with the deploy's checkpoint, and the
worker slot is free until the trigger fires. It resumes in ``resume`` from the event alone
(the checkpoint rides in it), applies the next step or rolls back, and at the end records
``modelyard://deployed/<release>`` or fails with the reason.

An operator and not ``@task``: TaskFlow tasks cannot defer (Airflow 3.3's ``self.defer`` and
``resume_execution`` are ``BaseOperator`` methods; the decorated callable has no ``self``).
The Kubernetes clients come from ``KubernetesHook`` and ``HelmHook`` (``kubernetes_conn_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from modelyard.deploy.rollout.kube_target import TargetFactory
    from modelyard.deploy.rollout.request import DeployRequest, StagedDeploy
    from modelyard.deploy.rollout.strategies import Target, Wait
    from modelyard.pipeline.config import Config


class DeployReleaseOperator(BaseOperator):
    """Deploy ``item`` (``{"release", "request"}`` from ``select_releases``) with deferred waits.

    Args:
        item: The release and the ``DeployRequest`` as JSON (templated; mapped by ``expand``).
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
        staged = stage_release(config, request, release, _tracking_uri(config), self._kube_targets(config, request))
        return self._go_on(context, staged, None)

    def resume(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Called by Airflow when a trigger fired: go on from its outcome."""
        from modelyard.deploy.rollout.apply import release_target
        from modelyard.deploy.rollout.request import DeployRequest, StagedDeploy

        checkpoint = event["checkpoint"]
        release = checkpoint["result"]["release"]
        context["release_label"] = release  # type: ignore[typeddict-unknown-key]
        request = DeployRequest.model_validate(checkpoint["request"])
        config = _config()
        target = release_target(config, request, release, _tracking_uri(config), self._kube_targets(config, request))
        staged = StagedDeploy.restore(target, checkpoint, config)
        return self._go_on(context, staged, event["outcome"], target)

    def _go_on(
        self, context: Context, staged: StagedDeploy, outcome: dict[str, Any] | None, target: Target | None = None
    ) -> dict[str, Any]:
        rollout = staged.rollout
        if rollout is not None:
            wait = rollout.advance(outcome)
            if wait is not None and self.deferrable:
                self.log.info("release %s: %s; deferring (%s)", staged.result.release, rollout.records[-1:], wait.kind)
                self.defer(trigger=self._trigger(staged, wait, target or rollout.target), method_name="resume")
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
        if request.target_name(config) != "kubernetes":
            return None
        from modelyard.deploy.rollout.kube_target import chart_path, helm_targets
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

        from modelyard.deploy.rollout.render import render_deploy
        from modelyard.pipeline.assets import deployed_uri

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
