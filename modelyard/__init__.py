"""modelyard: per-region ML models from raw data to a live endpoint, in versioned Airflow stages.

The repository keeps one folder per layer (``pipeline/``, ``training/``, ``deploy/``,
``plugins/``, ``dags/``); this package links them under one import namespace, so the
distribution installs ``modelyard.pipeline``, ``modelyard.training``, ... and nothing at the
top level of ``site-packages`` (ADR 0006).
"""

from importlib import metadata

try:
    __version__ = metadata.version("modelyard")
except metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0.0.0"
