from __future__ import annotations

from modelyard.core.config import Config
from modelyard.training import registry


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
