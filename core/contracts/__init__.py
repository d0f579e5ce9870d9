"""The contracts between stages: each side imports the same module (ADR 0013).

``assets`` (Asset URIs and event payloads), ``prediction_log`` (the sampled record the server
writes and monitoring reads), ``snapshot_layout`` (where a snapshot's files are) and ``columns``
(column names every stage agrees on).
"""
