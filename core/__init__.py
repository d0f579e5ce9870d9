"""What every stage and the serving pod share: errors, the config, storage, the feature spec,
the stage contracts, the registry readers and the tracking-server lookup.

Nothing here imports pandas, Great Expectations, matplotlib or Airflow at module level, so the
serving pod can import it; a stage's own logic lives in its own room (ADR 0013).
"""
