"""Model URIs: ``models:/name/version`` or ``models:/name@alias``, anything else a named ModelMissing."""

from __future__ import annotations

import pytest

from modelyard.deploy.serving.errors import ModelMissing
from modelyard.deploy.serving.registry import ModelRef


def test_model_uris_parse_or_raise_model_missing():
    assert ModelRef.parse("models:/driver_acceptance-jakarta/3").version == "3"
    assert ModelRef.parse("models:/driver_acceptance-jakarta@champion").alias == "champion"
    with pytest.raises(ModelMissing, match="is not models:/<name>/<version>"):
        ModelRef.parse("runs:/abc/model")
