"""The MLflow tracking server and how a pair's registered model is named."""

from __future__ import annotations

import string

from pydantic import field_validator

from modelyard.core import storage
from modelyard.core.config.base import Section


class MlflowSettings(Section):
    """Where MLflow is, and the name template of each pair's registered model."""

    tracking_uri: str = "http://127.0.0.1:5000"
    model_name_template: str = "{family}-{region}"

    @field_validator("tracking_uri")
    @classmethod
    def _holds_no_secret(cls, uri: str) -> str:
        """Credentials for MLflow come from the environment or the ``mlflow_default`` connection, never the file."""
        storage.check_no_secrets(
            uri, {}, "mlflow.tracking_uri",
            hint="(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN; PGPASSWORD for a "
            "database URI) or the Airflow Connection mlflow_default",
        )  # fmt: skip
        return uri

    @field_validator("model_name_template")
    @classmethod
    def _names_each_pair(cls, template: str) -> str:
        """Two pairs must never share a registered model: the template names both family and region."""
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"{template!r} is not a format template ({exc})") from exc
        if missing := {"family", "region"} - fields:
            raise ValueError(
                f"{template!r} lacks {', '.join('{' + m + '}' for m in sorted(missing))}: every pair needs a "
                "registered model of its own, e.g. '{family}-{region}'"
            )
        if unknown := fields - {"family", "region"}:
            raise ValueError(
                f"{template!r} uses {', '.join('{' + u + '}' for u in sorted(unknown))}; only {{family}} and "
                "{region} are filled in"
            )
        return template

    def model_name(self, family: str, region: str) -> str:
        """The registered model of (family, region)."""
        return self.model_name_template.format(family=family, region=region)
