from __future__ import annotations

from pathlib import Path

from modelyard.core.config import Config, load_config
from modelyard.training import registry
from tests.unit.conftest import CONFIG_YAML


def test_input_key_is_stable_and_ignores_param_order() -> None:
    first = registry.input_key("abc", "s1", 42, "xgboost", {"max_depth": 3, "learning_rate": 0.1})
    second = registry.input_key("abc", "s1", 42, "xgboost", {"learning_rate": 0.1, "max_depth": 3})
    assert first == second
    assert len(first) == 16


def test_input_key_changes_with_every_input() -> None:
    base = registry.input_key("abc", "s1", 42, "xgboost", {"max_depth": 3})
    variants = [
        registry.input_key("abd", "s1", 42, "xgboost", {"max_depth": 3}),
        registry.input_key("abc", "s2", 42, "xgboost", {"max_depth": 3}),
        registry.input_key("abc", "s1", 43, "xgboost", {"max_depth": 3}),
        registry.input_key("abc", "s1", 42, "sklearn_random_forest", {"max_depth": 3}),
        registry.input_key("abc", "s1", 42, "xgboost", {"max_depth": 4}),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_settings_hash_follows_the_pair_not_unrelated_sections(small_config: Config) -> None:
    before = registry.training_settings_hash(small_config, "eta", "alpha")
    other_region = registry.training_settings_hash(small_config, "eta", "beta")
    deploy_changed = small_config.model_copy(
        update={"deploy": small_config.deploy.model_copy(update={"target": "kubernetes"})}
    )
    holdout_changed = small_config.model_copy(
        update={"training": small_config.training.model_copy(update={"holdout_days": 7})}
    )
    assert other_region != before  # beta overrides the algorithm
    assert registry.training_settings_hash(deploy_changed, "eta", "alpha") == before
    assert registry.training_settings_hash(holdout_changed, "eta", "alpha") != before


def test_metric_tags_round_and_skip_missing() -> None:
    tags = registry.metric_tags({"holdout_auc": 0.812345678, "valid_auc": 0.7}, ("holdout_auc", "holdout_mae"))
    assert tags == {"holdout_auc": "0.812346"}


def test_pip_requirements_pin_the_installed_packages_of_each_flavor() -> None:
    from importlib import metadata

    for flavor, distribution in (("xgboost", "scikit-learn"), ("sklearn", "skops")):
        pinned = registry.pip_requirements(flavor)
        assert pinned[0] == f"mlflow=={metadata.version('mlflow')}"
        assert f"{distribution}=={metadata.version(distribution)}" in pinned
        assert f"pandas=={metadata.version('pandas')}" in pinned
    # xgboost may come from a distribution of another name (xgboost-cpu): resolved by import name.
    xgboost_pin = [p for p in registry.pip_requirements("xgboost") if p.startswith("xgboost")]
    assert len(xgboost_pin) == 1
    name, _, version = xgboost_pin[0].partition("==")
    assert metadata.version(name) == version


def test_pip_requirements_are_a_fresh_list_each_call() -> None:
    first = registry.pip_requirements("xgboost")
    first.append("something-else==1")
    assert "something-else==1" not in registry.pip_requirements("xgboost")


def test_the_model_description_says_what_the_family_predicts_and_for_which_region(small_config: Config) -> None:
    described = small_config.model_copy(
        update={"families": [small_config.families[0].model_copy(update={"description": "Does the driver accept?"})]}
    )
    text = registry.model_description(described, "acceptance", "alpha")
    assert text.startswith("**acceptance**: Does the driver accept?")
    assert "Region **alpha** (ID, Asia/Jakarta)." in text
    assert "Target: `accepted`; features: x1, x2, is_new_driver." in text


def test_a_family_without_description_and_a_pooled_model_are_described_too(tmp_path: Path) -> None:
    path = tmp_path / "modelyard.yaml"
    path.write_text(CONFIG_YAML % {"root": tmp_path / "store"} + "groups: {everywhere: all}\n")
    text = registry.model_description(load_config(path, environ={}), "eta", "everywhere")
    assert text.startswith("**eta**: A regression model.")
    assert "Pooled model of the region group **everywhere** (alpha, beta)." in text


def test_a_decided_version_without_alias_is_not_made_challenger_again() -> None:
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    class NoClient:
        def search_model_versions(self, *args: object, **kwargs: object) -> list[object]:
            raise AssertionError("a decided version needs no look-up")

    decided = ModelVersion("m", "3", 0, tags=[ModelVersionTag("promotion.outcome", "promoted")], aliases=[])
    assert registry.repair_alias(NoClient(), decided) is False  # type: ignore[arg-type]


class _RacingRegistry:
    """An alias store where another training's write lands first (the unique violation PostgreSQL gives)."""

    def __init__(self, rival: str | None, collisions: int) -> None:
        self.alias = rival
        self.collisions = collisions
        self.writes: list[str] = []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        if self.collisions:
            self.collisions -= 1
            raise MlflowException("(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint")
        self.writes.append(version)
        self.alias = version

    def get_model_version_by_alias(self, name: str, alias: str) -> object:
        from mlflow.exceptions import MlflowException

        if self.alias is None:
            raise MlflowException("no alias")
        return type("Version", (), {"version": self.alias})()


def test_a_collision_on_the_challenger_alias_leaves_it_on_the_newest_version() -> None:
    newer_won = _RacingRegistry(rival="3", collisions=1)
    registry.set_challenger(newer_won, "m", "2")  # type: ignore[arg-type]
    assert (newer_won.alias, newer_won.writes) == ("3", [])  # the newer concurrent version keeps it
    older_won = _RacingRegistry(rival="1", collisions=1)
    registry.set_challenger(older_won, "m", "2")  # type: ignore[arg-type]
    assert (older_won.alias, older_won.writes) == ("2", ["2"])


def test_other_registry_errors_and_endless_collisions_are_raised() -> None:
    import pytest
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="UniqueViolation"):
        registry.set_challenger(_RacingRegistry(rival=None, collisions=9), "m", "2", attempts=3)  # type: ignore[arg-type]


class _DescribedModel:
    """A registry holding one model's description; counts the writes."""

    def __init__(self, description: str | None) -> None:
        self.description = description
        self.writes: list[str] = []

    def get_registered_model(self, name: str) -> object:
        return type("Model", (), {"description": self.description})()

    def update_registered_model(self, name: str, description: str) -> None:
        self.writes.append(description)
        self.description = description


def test_a_description_is_written_only_when_it_changes_and_keeps_the_history() -> None:
    from modelyard.core.contracts.registry import HISTORY_HEADING, split_history

    new = _DescribedModel(None)
    registry.describe_model(new, "m", "**fam**: about.")  # type: ignore[arg-type]
    assert new.writes == ["**fam**: about."]
    promoted = _DescribedModel(f"**fam**: about.\n\n{HISTORY_HEADING}\n- v1 promoted")
    registry.describe_model(promoted, "m", "**fam**: about.")  # type: ignore[arg-type]
    assert promoted.writes == []  # a retrain on the same config has nothing to write
    registry.describe_model(promoted, "m", "**fam**: about, edited.")  # type: ignore[arg-type]
    assert [split_history(written) for written in promoted.writes] == [
        ("**fam**: about, edited.", f"{HISTORY_HEADING}\n- v1 promoted")
    ]


def test_the_registry_writer_is_the_clients_registry_client() -> None:
    from mlflow import MlflowClient
    from mlflow.tracking._model_registry.client import ModelRegistryClient

    writer = registry.registry_writer(MlflowClient("http://127.0.0.1:1", "http://127.0.0.1:1"))
    assert isinstance(writer, ModelRegistryClient)  # writes without MlflowClient's prompt check (a read each)
    plain = object()
    assert registry.registry_writer(plain) is plain  # type: ignore[arg-type]
