"""What the stages agree on in the MLflow registry: aliases and the tag prefixes each stage writes."""

from __future__ import annotations

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
PREVIOUS_ALIAS = "previous-champion"

INPUT_KEY_TAG = "input_key"  # training: the digest of (snapshot, settings, seed, algorithm, params)
PROMOTION_TAG = "promotion."  # promotion: the decision, per gate and in summary
HISTORY_TAG = "promotion_history"  # promotion: the alias moves of a registered model
MONITORING_TAG = "monitoring."  # monitoring: the drift verdict of a served version

# training: the lineage of a pooled model's version (ADR 0015): the group, the regions it pooled and
# each region's snapshot digest (``jakarta=<digest>,surabaya=<digest>``).
POOLED_GROUP_TAG = "pooled_group"
POOLED_REGIONS_TAG = "pooled_regions"
POOLED_SNAPSHOTS_TAG = "pooled_snapshots"
