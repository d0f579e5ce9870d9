"""Hooks: each owns a client and takes a ``*_conn_id``, like an Airflow provider's hooks."""
