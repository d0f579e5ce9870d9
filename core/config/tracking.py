"""The MLflow tracking server and how a pair's registered model is named."""

from __future__ import annotations

from modelyard.core.config.base import Section


class MlflowSettings(Section):
    """Where MLflow is, and the name template of each pair's registered model."""

    tracking_uri: str = "http://127.0.0.1:5000"
    model_name_template: str = "{family}-{region}"

    def model_name(self, family: str, region: str) -> str:
        """The registered model of (family, region)."""
        return self.model_name_template.format(family=family, region=region)
