"""The server's OpenAPI 3.1 document (``GET /openapi.json``): ``/v1``, MLflow's ``/invocations``, ``/v2``, admin.

Written by hand beside the endpoints it describes (the server has no framework to derive it
from); ``tests/unit/deploy/serving/test_v2_openapi.py`` validates it and checks that every
route the app answers is in it.
"""

from __future__ import annotations

import functools
from typing import Any

from modelyard.core.contracts.prediction_log import PROBE_HEADER

OPENAPI_VERSION = "3.1.0"
# What a 404 lists: every route, in one line each (this document has the details).
ENDPOINTS = (
    "POST /v1/predict/{family}/{region}",
    "POST /invocations/{family}/{region}",
    "GET /v1/models/{family}/{region}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET|PUT /admin/plan",
    "POST /admin/features/{family}/{region}",
    "GET /openapi.json",
    "GET /v2",
    "GET /v2/health/live|ready",
    "GET /v2/models/{name}[/versions/{version}][/ready]",
    "POST /v2/models/{name}[/versions/{version}]/infer",
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


FAMILY = _path_param("family", "Model family (``families[].name``)")
REGION = _path_param("region", "Region (``regions[].name``)")
MODEL = _path_param("model_name", "``<family>-<region>``, or the registered model name of a variant")
VERSION = _path_param("model_version", "A registered version the service's variants serve")
ERROR = _json(_ref("Error"), "The request is wrong; ``field`` names where")
V2_ERROR = _json(_ref("V2Error"), "The request is wrong, or the model or version is not served")


def _schemas() -> dict[str, Any]:
    record = {"type": "object", "additionalProperties": True, "description": "Raw field (or feature) -> value"}
    tensor_meta = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": ["BOOL", "INT64", "FP32", "FP64", "BYTES"]},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {
                "type": "object",
                "description": "An online feature: {optional: true, online: true, key, default?}, "
                "looked up by the record's key when not sent",
            },
        },
    }
    return {
        "Record": record,
        "PredictRequest": {
            "oneOf": [
                record,
                {"type": "array", "items": record},
                {
                    "type": "object",
                    "required": ["records"],
                    "properties": {"records": {"type": "array", "items": record}},
                },
            ]
        },
        "PredictResponse": {
            "type": "object",
            "required": ["predictions", "model", "version", "variant", "routed_by", "request_id"],
            "properties": {
                "predictions": {"type": "array", "items": {"type": "number"}},
                "model": {"type": "string"},
                "version": {"type": "string"},
                "variant": {"type": "string"},
                "routed_by": {"type": "string", "description": "``rule:<name>``, ``weight`` or ``random``"},
                "request_id": {"type": "string"},
            },
        },
        "MlflowRequest": {
            "type": "object",
            "description": "One of dataframe_split, dataframe_records, inputs, instances (MLflow's scoring formats)",
            "properties": {k: {} for k in ("dataframe_split", "dataframe_records", "inputs", "instances")},
        },
        "MlflowResponse": {
            "type": "object",
            "properties": {"predictions": {"type": "array", "items": {"type": "number"}}},
        },
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "path": {"type": "string", "description": "The path asked (404 and 405)"},
                "endpoints": {"type": "array", "items": {"type": "string"}, "description": "What exists (404)"},
                "allow": {"type": "array", "items": {"type": "string"}, "description": "The methods it takes (405)"},
            },
        },
        "ModelDetail": {
            "type": "object",
            "description": "A service: its routing; per variant and shadow its version, state and raw fields",
            "required": ["family", "region", "v2_name", "inputs", "variants"],
            "properties": {
                "family": {"type": "string"},
                "region": {"type": "string"},
                "v2_name": {"type": "string"},
                "fallback": {
                    "type": ["string", "null"],
                    "description": "``<family>/<group>`` when the region is served by its group's pooled model",
                },
                "routing_key": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
                "variants": {"type": "array", "items": {"type": "object"}},
                "rules": {"type": "array", "items": {"type": "object"}},
                "shadows": {"type": "array", "items": {"type": "object"}},
            },
        },
        "AdminPlan": {"type": "object", "description": "A deployment plan (``deploy/serving/plan.py``), YAML or JSON"},
        "V2TensorMetadata": tensor_meta,
        "V2ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "V2ModelMetadata": {
            "type": "object",
            "required": ["name", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
                "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            },
        },
        "V2Tensor": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "parameters": {"type": "object"},
                "data": {"type": "array"},
            },
        },
        "V2InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {"routing_key": {"type": ["string", "integer"], "description": "Sticky split key"}},
                },
                "inputs": {"type": "array", "items": _ref("V2Tensor")},
                "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            },
        },
        "V2InferResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string", "description": "The version that answered"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": _ref("V2Tensor")},
            },
        },
        "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "V2Health": {"type": "object", "properties": {"live": {"type": "boolean"}, "ready": {"type": "boolean"}}},
    }


def _v1_paths() -> dict[str, Any]:
    predict_responses = {"200": _json(_ref("PredictResponse"), "Predictions"), "400": ERROR, "404": ERROR, "422": ERROR}
    return {
        "/v1/predict/{family}/{region}": {
            "post": {
                "summary": "Predict with the service's routed variant",
                "tags": ["v1"],
                "parameters": [FAMILY, REGION, _header("X-Routing-Key"), _header("X-Request-Id"), PROBE],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PredictRequest")}}},
                "responses": predict_responses,
            }
        },
        "/invocations/{family}/{region}": {
            "post": {
                "summary": "MLflow's scoring protocol, routed like /v1",
                "tags": ["v1"],
                "parameters": [FAMILY, REGION, _header("X-Routing-Key"), PROBE],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("MlflowRequest")}}},
                "responses": {"200": _json(_ref("MlflowResponse"), "Predictions"), "400": ERROR, "404": ERROR},
            }
        },
        "/v1/models/{family}/{region}": {
            "get": {
                "summary": "What the service serves: versions, routing, raw fields each version takes",
                "tags": ["v1"],
                "parameters": [FAMILY, REGION],
                "responses": {"200": _json(_ref("ModelDetail"), "The service"), "404": ERROR},
            }
        },
        "/healthz": {"get": {"summary": "Alive", "tags": ["ops"], "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Every model of the active plan is warm (per-model detail and swap status)",
                "tags": ["ops"],
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus instruments",
                "tags": ["ops"],
                "responses": {"200": {"description": "Text exposition", "content": {"text/plain": {}}}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "tags": ["ops"], "responses": {"200": {"description": "OpenAPI"}}}
        },
    }


def _admin_paths() -> dict[str, Any]:
    secured = {"security": [{"adminToken": []}], "tags": ["admin"]}
    plan_body = {
        "required": True,
        "content": {k: {"schema": _ref("AdminPlan")} for k in ("application/json", "application/yaml")},
    }
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["1", "true", "yes"]},
    }
    return {
        "/admin/plan": {
            "get": {
                **secured,
                "summary": "The active plan, the one loading and the last rejected",
                "responses": {"200": {"description": "Plan state"}, "401": ERROR, "403": ERROR},
            },
            "put": {
                **secured,
                "summary": "Validate and swap to a plan; written to the plan file once active",
                "parameters": [wait],
                "requestBody": plan_body,
                "responses": {
                    "200": {"description": "Active (with ?wait)"},
                    "202": {"description": "Loading"},
                    "401": ERROR,
                    "403": ERROR,
                    "409": {"description": "Rejected"},
                    "422": ERROR,
                },
            },
        },
        "/admin/features/{family}/{region}": {  # online features (ADR 0019)
            "post": {
                **secured,
                "summary": "Push online feature values: {values: [{feature, key, value, window_end?}]}",
                "parameters": [FAMILY, REGION],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "Written (an older window than the stored one is skipped)"},
                    "401": ERROR,
                    "403": ERROR,
                    "404": ERROR,
                    "409": ERROR,
                    "422": ERROR,
                },
            },
        },
    }


def _v2_paths() -> dict[str, Any]:
    def get(summary: str, schema: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        ok = _json(_ref(schema), summary)
        return {
            "get": {
                "summary": summary,
                "tags": ["v2"],
                "parameters": params,
                "responses": {"200": ok, "400": V2_ERROR, "404": V2_ERROR},
            }
        }

    def infer(params: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"required": True, "content": {"application/json": {"schema": _ref("V2InferRequest")}}}
        responses = {"200": _json(_ref("V2InferResponse"), "Outputs"), "400": V2_ERROR, "404": V2_ERROR}
        summary = "Infer (routed through the plan like /v1; a version bypasses the split)"
        parameters = [*params, _header("X-Routing-Key"), PROBE]
        operation = {"summary": summary, "tags": ["v2"], "parameters": parameters, "requestBody": body}
        return {"post": {**operation, "responses": responses}}

    versioned = [MODEL, VERSION]
    return {
        "/v2": get("Server metadata", "V2ServerMetadata", []),
        "/v2/health/live": get("Server live", "V2Health", []),
        "/v2/health/ready": get("Server ready (every model warm)", "V2Health", []),
        "/v2/models/{model_name}": get("Model metadata", "V2ModelMetadata", [MODEL]),
        "/v2/models/{model_name}/ready": get("Model ready", "V2Health", [MODEL]),
        "/v2/models/{model_name}/infer": infer([MODEL]),
        "/v2/models/{model_name}/versions/{model_version}": get("Version metadata", "V2ModelMetadata", versioned),
        "/v2/models/{model_name}/versions/{model_version}/ready": get("Version ready", "V2Health", versioned),
        "/v2/models/{model_name}/versions/{model_version}/infer": infer(versioned),
    }


def _header(name: str, description: str | None = None) -> dict[str, Any]:
    header = {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
    return {**header, "description": description} if description else header


# A synthetic check's request (a deploy's smoke test): counted in /metrics, never sampled or shadowed.
PROBE = _header(
    PROBE_HEADER,
    "Any value marks the request as a probe: answered and counted in /metrics, but never sampled "
    "into the prediction log nor handed to shadows (drift and live quality never see it).",
)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document of every endpoint the server answers."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "modelyard serving",
            "version": "1",
            "description": "Per-region models routed by plan: modelyard's /v1, MLflow's /invocations, "
            "the Open Inference Protocol (v2) and the admin API.",
        },
        "paths": {**_v1_paths(), **_v2_paths(), **_admin_paths()},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
