"""Rollout orchestration (runs in an Airflow worker or the CLI): planner, strategies, local and Kubernetes targets."""
