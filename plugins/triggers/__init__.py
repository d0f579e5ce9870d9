"""Triggers: the deploy DAG's long waits, run in the triggerer instead of holding a worker slot."""
