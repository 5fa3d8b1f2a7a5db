"""The OpenAPI document matches the app: every route with its methods, nothing
more, the credential each route really asks for, and valid OpenAPI 3.1."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import schemathesis

from grok2api.api.cors import is_admin_path
from grok2api.api.openapi import openapi_document
from grok2api.app import create_app
from grok2api.config import server_options_from_env
from tests.conftest import Gateway

_METHODS = {"get", "post", "put", "patch", "delete"}


def app_routes(data_dir: Path) -> set[tuple[str, str]]:
    """(method, path) of every route on the app, paths in OpenAPI spelling."""
    app = create_app(server_options_from_env({"DATA_DIR": str(data_dir)}))
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method.lower(), path))
    return found


def documented_operations() -> dict[tuple[str, str], dict[str, object]]:
    return {
        (method, path): operation
        for path, item in openapi_document()["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    }


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    documented = set(documented_operations())
    assert len(routes) >= 20
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations the app lacks"


def test_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()


def test_each_operation_names_the_credential_of_its_area() -> None:
    api = [{"apiKey": []}, {"apiKeyHeader": []}]
    admin_read = [{"adminPassword": []}, {"adminSession": []}]
    admin_write = [{"adminPassword": []}, {"adminSession": [], "csrfToken": []}]
    for (method, path), operation in documented_operations().items():
        security = operation["security"]
        if security == []:
            continue
        if is_admin_path(path):
            expected = admin_read if method == "get" else admin_write
        else:
            assert path.startswith("/v1/"), path
            expected = api
        assert security == expected, (method, path)


def test_the_gateway_serves_the_document_to_anyone(fuzzed_gateway: Gateway) -> None:
    response = httpx.get(f"{fuzzed_gateway.url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == openapi_document()


def test_documented_credentials_are_the_ones_asked_for(fuzzed_gateway: Gateway) -> None:
    """An operation documented without security answers without a key; every
    other one refuses an anonymous caller with a 401 in the envelope."""
    for (method, path), operation in documented_operations().items():
        url = fuzzed_gateway.url + re.sub(r"\{[^}]+\}", "some-id", path)
        response = httpx.request(method.upper(), url, json={}, timeout=30)
        if operation["security"] == []:
            assert response.status_code != 401, (method, path)
        else:
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["type"] == "authentication_error"
