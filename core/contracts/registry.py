"""What the stages agree on in the MLflow registry: aliases and the tag prefixes each stage writes."""

from __future__ import annotations

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
PREVIOUS_ALIAS = "previous-champion"

INPUT_KEY_TAG = "input_key"  # training: the digest of (snapshot, settings, seed, algorithm, params)
PROMOTION_TAG = "promotion."  # promotion: the decision, per gate and in summary
HISTORY_TAG = "promotion_history"  # promotion: the alias moves of a registered model
MONITORING_TAG = "monitoring."  # monitoring: the drift verdict of a served version
