"""The one typed configuration of modelyard, loaded from ``modelyard.yaml``: one module per section.

``root`` holds :class:`Config` and the rules that span sections; ``loading`` reads the file,
an overlay and ``MODELYARD_*`` variables (see its docstring and ADR 0001); ``pairs`` resolves
one (family, region) once. Each other module is one section, named after what reads it:
``regions``, ``datasets``, ``families``, ``storage``, ``tracking`` (MLflow), ``data``,
``training``, ``gates``, ``promotion``, ``deploy``, ``scale``, ``monitoring``, ``online``, ``retention``.

Import the names from here: ``from modelyard.core.config import Config, load_config``.
"""

from __future__ import annotations

from modelyard.core.config.base import ConfigError, Section
from modelyard.core.config.data import DataSettings, Schedules, SyntheticSettings
from modelyard.core.config.datasets import Column, ColumnType, Condition, Dataset, DatasetSource, Expectation
from modelyard.core.config.deploy import (
    DeploySettings,
    DeployWindow,
    KubernetesTargetConfig,
    LocalTargetConfig,
    RolloutSettings,
)
from modelyard.core.config.families import (
    Algorithm,
    Comparison,
    Family,
    FeatureDecl,
    RegionOverride,
    RowSelection,
    Slice,
    TargetRule,
    Task,
)
from modelyard.core.config.gates import (
    GATE_TASK_KEYS,
    AbsoluteGate,
    BaselineGate,
    GateDefaults,
    GateSettings,
    TaskGates,
    VersusChampionGate,
)
from modelyard.core.config.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    OVERLAY_ENV,
    config_path,
    load_config,
)
from modelyard.core.config.monitoring import DriftBounds, MonitoringSettings
from modelyard.core.config.online import OnlineSettings
from modelyard.core.config.pairs import PairView
from modelyard.core.config.promotion import Approval, ApprovalOverride, PromotionSettings
from modelyard.core.config.regions import Festival, Region
from modelyard.core.config.retention import RetentionSettings
from modelyard.core.config.root import Config
from modelyard.core.config.scale import ScaleSettings
from modelyard.core.config.storage import LOCK_PROTOCOLS, Storage, StorageRoot
from modelyard.core.config.tracking import MlflowSettings
from modelyard.core.config.training import TrainingSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "GATE_TASK_KEYS",
    "LOCK_PROTOCOLS",
    "OVERLAY_ENV",
    "AbsoluteGate",
    "Algorithm",
    "Approval",
    "ApprovalOverride",
    "BaselineGate",
    "Column",
    "ColumnType",
    "Comparison",
    "Condition",
    "Config",
    "ConfigError",
    "DataSettings",
    "Dataset",
    "DatasetSource",
    "DeploySettings",
    "DeployWindow",
    "DriftBounds",
    "Expectation",
    "Family",
    "FeatureDecl",
    "Festival",
    "GateDefaults",
    "GateSettings",
    "KubernetesTargetConfig",
    "LocalTargetConfig",
    "MlflowSettings",
    "MonitoringSettings",
    "OnlineSettings",
    "PairView",
    "PromotionSettings",
    "Region",
    "RegionOverride",
    "RetentionSettings",
    "RolloutSettings",
    "RowSelection",
    "ScaleSettings",
    "Schedules",
    "Section",
    "Slice",
    "Storage",
    "StorageRoot",
    "SyntheticSettings",
    "TargetRule",
    "Task",
    "TaskGates",
    "TrainingSettings",
    "VersusChampionGate",
    "config_path",
    "load_config",
]
