"""The monitoring stage: drift of what serves, measured per (family, region, version) against
the training window, recorded in MLflow and published as drift Assets.
"""
