"""The OpenAPI document: valid OpenAPI 3.1, and it describes every route the server answers."""

from __future__ import annotations

from openapi_spec_validator import validate

from modelyard.deploy.serving.openapi import document

ANSWERED = {  # every (method, path) ServingApp answers (app.py, admin.py, online.py, protocol_v2/routes.py)
    ("post", "/v1/predict/{family}/{region}"),
    ("post", "/invocations/{family}/{region}"),
    ("get", "/v1/models/{family}/{region}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/admin/plan"),
    ("put", "/admin/plan"),
    ("post", "/admin/features/{family}/{region}"),  # online features (deploy/serving/online.py)
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{model_name}"),
    ("get", "/v2/models/{model_name}/ready"),
    ("post", "/v2/models/{model_name}/infer"),
    ("get", "/v2/models/{model_name}/versions/{model_version}"),
    ("get", "/v2/models/{model_name}/versions/{model_version}/ready"),
    ("post", "/v2/models/{model_name}/versions/{model_version}/infer"),
}


def test_the_document_is_valid_openapi():
    validate(document())


def test_every_answered_route_is_described_and_nothing_else():
    described = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert described == ANSWERED


def test_the_admin_api_needs_the_bearer_token():
    spec = document()
    assert spec["components"]["securitySchemes"]["adminToken"] == {"type": "http", "scheme": "bearer"}
    assert all(op["security"] == [{"adminToken": []}] for op in spec["paths"]["/admin/plan"].values())


def test_every_prediction_route_documents_the_probe_header():
    predicting = [(m, p) for m, p in ANSWERED if m == "post" and ("predict" in p or "infer" in p or "invocations" in p)]
    paths = document()["paths"]
    for method, path in predicting:
        headers = {p["name"] for p in paths[path][method]["parameters"] if p["in"] == "header"}
        assert "X-Modelyard-Probe" in headers, path
