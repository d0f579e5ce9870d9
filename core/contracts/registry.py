"""What the stages agree on in the MLflow registry: aliases and the tag prefixes each stage writes."""

from __future__ import annotations

from collections.abc import Mapping

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
PREVIOUS_ALIAS = "previous-champion"

INPUT_KEY_TAG = "input_key"  # training: the digest of (snapshot, settings, seed, algorithm, params)
PROMOTION_TAG = "promotion."  # promotion: the decision, per gate and in summary
HISTORY_TAG = "promotion_history"  # promotion, before 2026-12: the alias moves as a JSON tag (read, then removed)
# promotion: the alias moves of a registered model, a section at the end of its description (a Markdown
# table, newest first, and the entries as JSON in an HTML comment); training rewrites the part above it.
HISTORY_HEADING = "#### Promotion history"
MONITORING_TAG = "monitoring."  # monitoring: the drift verdict of a served version


def monitoring_tag(key: str, region: str | None = None) -> str:
    """The tag monitoring writes ``key`` under: ``monitoring.<key>`` on a region's own version.

    A pooled version serves several regions (ADR 0015), each measured on its own traffic: their
    verdicts live side by side under ``monitoring.<region>.<key>``.
    """
    return f"{MONITORING_TAG}{region}.{key}" if region else f"{MONITORING_TAG}{key}"


# training: the tags naming the snapshot a version learnt from. A version without them was registered
# outside `modelyard train` (a notebook's): no gate can score it, no drift reference exists (ADR 0026).
TRAINING_WINDOW_TAGS = ("family", "region", "data_digest")


def missing_training_tags(tags: Mapping[str, str] | None) -> list[str]:
    """The :data:`TRAINING_WINDOW_TAGS` a version's ``tags`` lack (empty: trained by modelyard)."""
    return [key for key in TRAINING_WINDOW_TAGS if not (tags or {}).get(key)]


# training: the lineage of a pooled model's version (ADR 0015): the group, the regions it pooled and
# each region's snapshot digest (``jakarta=<digest>,surabaya=<digest>``).
POOLED_GROUP_TAG = "pooled_group"
POOLED_REGIONS_TAG = "pooled_regions"
POOLED_SNAPSHOTS_TAG = "pooled_snapshots"


def split_history(description: str | None) -> tuple[str, str]:
    """A registered model's description as (what training wrote, the promotion history section or '')."""
    text = description or ""
    head, mark, tail = text.partition(HISTORY_HEADING)
    return head.rstrip(), (mark + tail) if mark else ""
