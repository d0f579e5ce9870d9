"""Operators: DAG tasks that need more than ``@task`` offers (deferral)."""
