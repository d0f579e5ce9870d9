"""Limits on a YAML document's shape, checked from its event stream before anything is built.

A few aliases of aliases expand to billions of values when the result is walked ("billion
laughs"), and deep nesting exhausts the parser's stack. The config loader and the plan parser
refuse both with the same limits; reading events builds nothing, so the check costs no memory.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

MAX_ALIASES = 64
MAX_DEPTH = 32


def shape_problem(document: str | bytes | IO[str], loader: Any = yaml.SafeLoader) -> tuple[int | str, str] | None:
    """The line and the problem of the first limit ``document`` passes, or None when it fits.

    Raises:
        yaml.YAMLError: the text is not YAML.
    """
    aliases = depth = 0
    for event in yaml.parse(document, Loader=loader):
        line = event.start_mark.line + 1 if event.start_mark else "?"
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                return line, f"more than {MAX_ALIASES} YAML aliases (*name); write the values out or use fewer anchors"
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return line, f"nested deeper than {MAX_DEPTH} levels; flatten it"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None
