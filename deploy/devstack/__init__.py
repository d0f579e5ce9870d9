"""The developer stack (a laptop): embedded MLflow + Airflow, ``make up`` / ``make demo``."""
