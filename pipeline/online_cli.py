"""``modelyard features …`` commands: materialise online features from published snapshots, push fresher values.

Exit codes as in :mod:`modelyard.core.cli`: 2 bad input or config, 3 the online store does not answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from modelyard.core.cli import (
    ConfigOption,
    FamiliesOption,
    FamilyOption,
    RegionOption,
    RegionsOption,
    config_or_exit,
    console,
    exits_on_expected_errors,
)
from modelyard.core.config import ConfigError

if TYPE_CHECKING:
    from modelyard.core.online import PushError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def materialise(
    families: FamiliesOption = None, regions: RegionsOption = None, config_path: ConfigOption = None
) -> None:
    """Write the latest online feature values of each pair's newest snapshot to the online store."""
    from modelyard.core.featurespec import FittedSpec
    from modelyard.pipeline.online import materialise as write_pair
    from modelyard.pipeline.snapshots import SnapshotNotFoundError, latest_snapshot, load_frame

    config = config_or_exit(config_path)
    with exits_on_expected_errors():
        for family, region in config.pairs(families or None, regions or None):
            pair = config.pair_view(family, region)
            if not pair.spec.online:
                continue
            try:
                meta = latest_snapshot(config.storage.features_dir, family, region)
            except SnapshotNotFoundError as exc:
                console.print(f"[yellow]skipped[/] {family}/{region}: {escape(str(exc))}", highlight=False)
                continue
            online = FittedSpec.from_dict(meta.feature_spec or {}).online if meta.feature_spec else None
            try:
                done = write_pair(config, pair, load_frame(config.storage.features_dir, meta), meta.digest, online)
            except KeyError as exc:
                raise ConfigError(
                    f"{family}/{region}: snapshot {meta.digest[:12]} has no key column {exc}; it was built before "
                    f"the feature was online: run `modelyard data build --family {family} --region {region}`"
                ) from None
            if done is not None:
                written = f"{family}/{region}: {done.landed} of {done.offered} values written to {done.store}"
                console.print(written, markup=False, highlight=False)


@app.command()
def push(
    family: FamilyOption,
    region: RegionOption,
    feature: Annotated[str | None, typer.Option("--feature", help="The online feature (with --key, --value).")] = None,
    key: Annotated[str | None, typer.Option("--key", help="The key value, e.g. an area's name.")] = None,
    value: Annotated[float | None, typer.Option("--value", help="The aggregate's fresh value.")] = None,
    window_end: Annotated[
        str | None, typer.Option("--window-end", help="End of its window: ISO-8601 with an offset (default: now).")
    ] = None,
    values_file: Annotated[
        Path | None,
        typer.Option("--file", help='A JSON list of {"feature", "key", "value", "window_end"} objects.'),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Push fresher online feature values of one (family, region) to the online store.

    A value lands unless the store holds one of a newer window; servers read it on their next lookup.
    """
    from modelyard.core.online import PushError, online_names, pushed_values
    from modelyard.pipeline.online import store_from_config

    config = config_or_exit(config_path)
    with exits_on_expected_errors():
        pair = config.pair_view(family, region)
        items = _items(feature, key, value, window_end, values_file)
        try:
            values = pushed_values(items, family, region, online_names(pair.family.feature_decls))
        except PushError as exc:
            raise ConfigError(_refusal(exc, values_file)) from None
        store = store_from_config(config.online, config.storage.local_dir)
        try:
            landed = store.write(values, config.online.prefix, config.online.chunk_rows)
        finally:
            store.close()
    skipped = len(values) - landed
    note = f" ({skipped} skipped: the store holds a newer window)" if skipped else ""
    written = f"{family}/{region}: {landed} of {len(values)} values written to {store.url}{note}"
    console.print(written, markup=False, highlight=False)


def _refusal(exc: PushError, values_file: Path | None) -> str:
    """``exc``'s message, which begins with its field, in the command's words: '--file x.json: values[3].key ...'
    for a file, '--value is ...' for the one value given by options."""
    if values_file is not None:
        return f"--file {values_file}: {exc.message}"
    part = exc.field.removeprefix("values[0].")
    if part in _OPTIONS and exc.message.startswith(exc.field):
        return _OPTIONS[part] + exc.message[len(exc.field) :]
    return exc.message


_OPTIONS = {"feature": "--feature", "key": "--key", "value": "--value", "window_end": "--window-end"}


def _items(
    feature: str | None, key: str | None, value: float | None, window_end: str | None, values_file: Path | None
) -> Any:
    """The pushed objects: from ``--file``, or the one given by ``--feature --key --value``."""
    single = (feature, key, value)
    if values_file is not None:
        if any(part is not None for part in single):
            raise ConfigError("give --file or --feature/--key/--value, not both")
        try:
            return json.loads(values_file.read_text())
        except OSError as exc:
            raise ConfigError(f"--file {values_file}: cannot read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ConfigError(f"--file {values_file}: not JSON ({exc}); give a list of objects") from None
    if any(part is None for part in single):
        raise ConfigError("give --feature, --key and --value (or --file with a JSON list of values)")
    return [{"feature": feature, "key": key, "value": value, "window_end": window_end}]
