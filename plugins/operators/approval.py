"""``PairApprovalOperator``: ask a person whether one (family, region) version may become champion.

Airflow's human-in-the-loop operator (``HITLOperator``, Airflow 3.1+) with the two answers
``Approve`` / ``Reject``, a ``reason`` field, the pair's headline (subject) and Markdown body
(gate table, metrics against the champion, links to both MLflow runs) from
``training.approval.build_request``. Mapped over the pairs awaiting approval, one Required
Action per pair, labelled ``<family>/<region>`` (``map_index_template="{{ task.pair_label }}"``).

The wait holds no worker slot: on Airflow 3.3 the task parks in ``awaiting_input`` (older
versions defer to ``HITLTrigger``); the scheduler resolves it on the answer or the timeout.
Unlike ``ApprovalOperator`` it never skips downstream tasks on Reject (the next task records
every answer, rejections included), and a timeout is an answer too (``timed-out``), not a
failure. It returns ``training.approval.Answer`` as JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param

if TYPE_CHECKING:
    from airflow.sdk import Context

APPROVE, REJECT = "Approve", "Reject"  # as training.approval (not imported here: DAG files stay light)


class PairApprovalOperator(HITLOperator):
    """One Required Action for ``request`` (``training.approval.ApprovalRequest`` as a dict).

    Args:
        request: ``family, region, model_name, version, subject, body, timeout_seconds``.
    """

    ui_color = "#fdebd0"

    def __init__(self, *, request: dict[str, Any], **kwargs: Any) -> None:
        self.request = request
        self.pair_label = f"{request['family']}/{request['region']}"
        kwargs.setdefault("params", {})["reason"] = Param(
            "", type="string", title="Reason", description="Why you approve or reject (recorded on the model version)."
        )
        super().__init__(
            subject=request["subject"], body=request["body"], options=[APPROVE, REJECT],
            response_timeout=dt.timedelta(seconds=float(request["timeout_seconds"])), **kwargs,
        )  # fmt: skip

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """The answer (approved / rejected by whom and why, or timed out) as JSON."""
        from modelyard.promotion.approval import answer_from_event

        if event.get("error_type") == "timeout":
            return answer_from_event(self.request, event).model_dump(mode="json")
        payload = super().execute_complete(context, event)
        return answer_from_event(self.request, dict(payload)).model_dump(mode="json")
