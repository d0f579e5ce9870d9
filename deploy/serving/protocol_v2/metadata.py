"""What a served model is called in v2, what it takes and what it gives.

A service (family, region) is named ``<family>-<region>`` (the default registered model name,
``mlflow.model_name_template``) and also by the registered model name of its variants, so a
client may use either. A version takes its raw fields (a feature spec's raw columns and the
window aggregates sent by name), or its signature's columns when it has no spec, each as a
typed tensor of shape ``[-1]``. An online window aggregate (ADR 0019) is listed with
``parameters`` ``{"optional": true, "online": true, "key": <field>}``: the server looks it up by
that field when a record does not carry it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from modelyard.deploy.serving.errors import RequestError

if TYPE_CHECKING:
    from modelyard.core.featurespec.definitions import FeatureDef
    from modelyard.deploy.serving.active import ActivePlan, ServiceHandle, VariantHandle
    from modelyard.deploy.serving.runtime import ServedModel

# A dataset's column type (``datasets[].columns``) and a signature's type -> the v2 datatype a client sends.
_SPEC_TYPES = {"float": "FP64", "int": "INT64", "bool": "BOOL", "category": "BYTES", "string": "BYTES"}
_SIGNATURE_TYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT64", "boolean": "BOOL"}
MAX_NAMES_IN_ERROR = 20


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output of a version: ``{name, datatype, shape}`` and, if any, ``parameters``."""

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)
    parameters: tuple[tuple[str, Any], ...] = ()  # the OIP's $metadata_tensor parameters, as pairs

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        return out


class ModelNames:
    """v2 model names of one active plan: ``<family>-<region>`` and each variant's registered name."""

    def __init__(self, active: ActivePlan) -> None:
        self.digest = active.digest
        self._keys: dict[str, tuple[str, str]] = {}
        for key, handle in active.services.items():
            for variant in handle.variants.values():
                self._keys.setdefault(variant.model.name, key)
        for family, region in active.services:  # the default name wins over a registered name that collides
            self._keys[f"{family}-{region}"] = (family, region)

    def service(self, active: ActivePlan, name: str) -> ServiceHandle:
        """The service ``name`` names.

        Raises:
            RequestError: 404 naming some served models.
        """
        key = self._keys.get(name)
        if key is None:
            served = sorted(f"{f}-{r}" for f, r in active.services)
            shown = ", ".join(served[:MAX_NAMES_IN_ERROR]) + (", ..." if len(served) > MAX_NAMES_IN_ERROR else "")
            raise RequestError(f"unknown model '{name}' (served: {shown})", field="model", status=404, code="not_found")
        return active.services[key]


def variant_of(handle: ServiceHandle, name: str, version: str) -> VariantHandle:
    """The variant serving ``version`` of the service (a request for a version bypasses the split).

    Raises:
        RequestError: 404 naming the versions served.
    """
    for variant in handle.variants.values():
        if variant.model.version == version:
            return variant
    versions = ", ".join(versions_of(handle))
    raise RequestError(
        f"version '{version}' of model '{name}' is not served (serving: {versions})",
        field="version",
        status=404,
        code="not_found",
    )


def versions_of(handle: ServiceHandle) -> list[str]:
    return list(dict.fromkeys(v.model.version for v in handle.variants.values()))


def inputs_of(model: ServedModel) -> list[TensorSpec]:
    """The raw fields ``model`` takes, as typed tensors (its spec's, else its signature's columns)."""
    if model.raw is None:
        return [TensorSpec(f.name, _SIGNATURE_TYPES.get(f.kind, "BYTES")) for f in model.schema.features]
    fitted = model.raw.fitted
    columns = fitted.spec.columns
    raw = [TensorSpec(name, _SPEC_TYPES.get(columns.get(name, "float"), "BYTES")) for name in fitted.raw_inputs]
    online = {feature.name: _online_parameters(feature) for feature in fitted.online}
    return raw + [
        TensorSpec(name, "FP64", parameters=online.get(name, ()))
        for name in fitted.requested
        if name not in set(fitted.raw_inputs)
    ]


def _online_parameters(feature: FeatureDef) -> tuple[tuple[str, Any], ...]:
    """An online aggregate is optional: the server looks it up by ``key`` (a value the client sends wins)."""
    default = () if feature.default is None else (("default", feature.default),)
    return (("optional", True), ("online", True), ("key", str(feature.key)), *default)


def service_inputs(handle: ServiceHandle) -> list[TensorSpec]:
    """What a client of the service sends: every variant's raw fields (a canary may take one more)."""
    merged: dict[str, TensorSpec] = {}
    for variant in handle.variants.values():
        for spec in inputs_of(variant.model):
            merged.setdefault(spec.name, spec)
    return list(merged.values())


def output_name(model: ServedModel) -> str:
    """``probability`` (class-1 probability of a classifier) or ``predict`` (anything else)."""
    return "probability" if model.status.task == "classification" else "predict"


def model_metadata(
    name: str, handle: ServiceHandle, variants: list[VariantHandle], output_types: dict[str, str]
) -> dict[str, Any]:
    """The ``$metadata_model_response`` of ``variants`` of a service (all of them, or one version's)."""
    inputs: dict[str, TensorSpec] = {}
    for variant in variants:
        for spec in inputs_of(variant.model):
            inputs.setdefault(spec.name, spec)
    first = variants[0].model
    outputs = {output_name(v.model): output_types.get(v.model.uri, "FP32") for v in variants}
    return {
        "name": name,
        "versions": list(dict.fromkeys(v.model.version for v in variants)),
        "platform": f"mlflow_{first.status.flavor or 'pyfunc'}",
        "inputs": [spec.to_dict() for spec in inputs.values()],
        "outputs": [TensorSpec(n, t).to_dict() for n, t in outputs.items()],
    }


def service_detail(handle: ServiceHandle, active: ActivePlan) -> dict[str, Any]:
    """``GET /v1/models/{family}/{region}``: how the service routes and what each version takes."""
    service = handle.service
    return {
        "family": service.family,
        "region": service.region,
        "v2_name": f"{service.family}-{service.region}",
        "fallback": active.fallbacks.get(service.key),  # "<family>/<group>": served by its group's pooled model
        "timezone": service.timezone,
        "routing_key": active.plan.routing_key,
        "max_records": active.plan.max_records,
        "inputs": [spec.to_dict() for spec in service_inputs(handle)],
        "variants": [
            {**_model_detail(v.model), "variant": v.name, "weight": w.weight}
            for v, w in zip(handle.variants.values(), service.variants, strict=True)
        ],
        "rules": [rule.model_dump(mode="json") for rule in service.rules],
        "shadows": [{**_model_detail(s.model), "shadow": s.name} for s in handle.shadows],
        "plan_digest": active.digest,
    }


def _model_detail(model: ServedModel) -> dict[str, Any]:
    status = model.status
    detail: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "uri": model.uri,
        "state": status.state,
        "flavor": status.flavor,
        "task": status.task,
        "engine": status.engine,
        "output": output_name(model),
        "inputs": [spec.to_dict() for spec in inputs_of(model)],
    }
    if model.raw is not None:
        detail["raw_fields"] = model.raw.describe()
    return detail
