"""What Airflow's ProvidersManager reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata: its hooks, connection types and extra links."""
    from modelyard import __version__

    return {
        "package-name": "modelyard",
        "name": "modelyard",
        "description": "Per-region ML models from data to a live endpoint: MLflow, Helm and Kubernetes hooks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "modelyard",
                "external-doc-url": "https://github.com/modelyard/modelyard",
                "tags": ["software"],
            },
        ],
        "hooks": [
            {
                "integration-name": "modelyard",
                "python-modules": [
                    "modelyard.plugins.hooks.mlflow",
                    "modelyard.plugins.hooks.kubernetes",
                    "modelyard.plugins.hooks.helm",
                    "modelyard.plugins.hooks.storage",
                ],
            }
        ],
        "connection-types": [
            {"hook-class-name": "modelyard.plugins.hooks.mlflow.MlflowHook", "connection-type": "mlflow"},
        ],
        "extra-links": [
            "modelyard.plugins.links.MlflowRunLink",
            "modelyard.plugins.links.MlflowModelVersionLink",
        ],
    }
