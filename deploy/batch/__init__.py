"""Batch scoring: a table's rows scored by a pair's registered version, in chunks, published as Parquet.

The stage that precomputes predictions (``modelyard score``, the ``batch_scoring`` DAG). Each
version featurises with its own ``feature_spec.json`` and predicts through the serving runtime's
own loader (``deploy/serving/runtime.py``), so a row scores here exactly as the server answers it.

Modules: ``errors``, ``inputs`` (files, digest, chunked typed reading), ``model`` (which version,
loaded as the server loads it), ``output`` (the Parquet file, its footer, the atomic publish),
``scoring`` (one pair, end to end), ``stage`` (a pair in a chunk of the DAG), ``cli``.
"""
