"""``modelyard score``: score a table with one pair's registered version, as the ``batch_scoring`` DAG does.

Composed into the root command (``deploy/cli.py``, loaded on first use). Exit 0 when the
predictions are published or already there, 2 for an unusable input, version or destination,
3 when the MLflow server does not answer. Announcing the predictions Asset stays with the DAG.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from modelyard.core.cli import ConfigOption, FamilyOption, RegionOption, TrackingOption
from modelyard.deploy.batch.scoring import DEFAULT_CHUNK_ROWS

InputOption = Annotated[
    str,
    typer.Option("--input", "-i", help="CSV/Parquet path, glob (quoted) or URL; {family} and {region} are replaced."),
]
OutOption = Annotated[
    str,
    typer.Option("--out", "-o", help="The Parquet file to publish (path or URL); replaced atomically."),
]
AliasOption = Annotated[str | None, typer.Option("--alias", help="Registry alias that scores (default: champion).")]
VersionOption = Annotated[int | None, typer.Option("--version", min=1, help="Version number instead of an alias.")]
ChunkOption = Annotated[
    int, typer.Option("--chunk-rows", min=1, help="Rows read, featurised and predicted at a time (bounds memory).")
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Score even when --out already holds this input's predictions by this version.")
]


def score(
    family: FamilyOption,
    region: RegionOption,
    input: InputOption,
    out: OutOption,
    alias: AliasOption = None,
    version: VersionOption = None,
    chunk_rows: ChunkOption = DEFAULT_CHUNK_ROWS,
    force: ForceOption = False,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Score the region's rows of a table with the pair's champion (or --alias / --version) into Parquet.

    Each row is featurised with the version's own feature spec and predicted as the server answers
    (a classifier's positive-class probability, a regressor's value). The file holds the key column
    (the dataset's key_column, else input_row), prediction, model_version and spec_digest; a rerun
    on the same input with the same version does nothing.
    """
    from rich.console import Console
    from rich.markup import escape

    from modelyard.core.cli import exits_on_expected_errors
    from modelyard.core.config import load_config
    from modelyard.core.tracking import require_reachable, resolve_tracking_uri
    from modelyard.deploy.batch.model import registry_client, trust_from_env
    from modelyard.deploy.batch.scoring import ScoreRequest, score_pair

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        request = ScoreRequest(
            input=input,
            out=out,
            alias=alias,
            version=version,
            chunk_rows=chunk_rows,
            force=force,
            trust=trust_from_env(os.environ),
        )
        uri = require_reachable(tracking_uri or resolve_tracking_uri(loaded))
        result = score_pair(loaded, family, region, request, registry_client(uri))
    console.print(f"{escape(f'{family}/{region}')}: {escape(result.summary())}", highlight=False, soft_wrap=True)
