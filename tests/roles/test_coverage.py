"""No view or API operation is left without a role check, including ones added later."""

from __future__ import annotations

import inspect
import re

import pytest
from django.urls import get_resolver

from audioml import roles
from audioml.api import api
from tests.core.test_panel_access import PUBLIC_PREFIXES, _walk

# Any staff user may reach these: the home page (it sends each user where they may go) and their own API tokens.
PANEL_FOR_ANY_STAFF = {"home", "token-list", "token-revoke"}
API_FOR_ANY_STAFF = {"list_tokens", "create_token", "revoke_token"}
API_PUBLIC = {"health", "ready"}
READ_BY_POST = {"predict", "synthesize"}  # score uploaded audio, speak text; change nothing
KNOWN_PERMISSIONS = {value for name, value in vars(roles).items() if name.startswith("CAN_")}


def panel_views():
    for route, pattern in _walk(get_resolver().url_patterns):
        if not route.lstrip("^").startswith(PUBLIC_PREFIXES):
            yield pattern.name, pattern.callback


def api_operations():
    for _prefix, router in api._routers:
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                yield operation


def test_every_panel_view_needs_a_permission_unless_it_is_for_any_staff():
    unchecked = sorted(name for name, view in panel_views()
                       if name not in PANEL_FOR_ANY_STAFF and not getattr(view, "required_permission", None))
    assert unchecked == []
    declared = {getattr(view, "required_permission", None) for _, view in panel_views()} - {None}
    assert declared <= KNOWN_PERMISSIONS


def test_every_api_operation_checks_a_permission_and_writes_never_need_only_a_read_permission():
    problems = []
    for operation in api_operations():
        name = operation.view_func.__name__
        if name in API_FOR_ANY_STAFF | API_PUBLIC:
            continue
        source = inspect.getsource(inspect.unwrap(operation.view_func))
        checks = re.findall(r"require\(request\.user, (CAN_\w+)\)", source)
        if not checks:
            problems.append(f"{name}: no require()")
            continue
        permission = getattr(roles, checks[0])
        is_read = permission.split(".")[1].startswith("view_")
        if operation.methods != ["GET"] and is_read and name not in READ_BY_POST:
            problems.append(f"{name}: a {operation.methods} operation guarded only by {permission}")
        if operation.methods == ["GET"] and not is_read:
            problems.append(f"{name}: a GET guarded by the write permission {permission}")
    assert problems == []


def _concrete_api_paths() -> list[str]:
    schema = api.get_openapi_schema()
    values = {"name": "kws", "clip_id": "1", "job_id": "1", "version": "1", "artifact": "model.onnx", "alias": "production",
              "prediction_id": "1"}
    paths = []
    for path, methods in schema["paths"].items():
        operation_id = methods.get("get", {}).get("operationId", "")
        if operation_id and not any(operation_id.endswith(f"_{name}") for name in API_PUBLIC | API_FOR_ANY_STAFF):
            paths.append(re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path))
    return sorted(paths)


@pytest.mark.parametrize("path", _concrete_api_paths())
def test_staff_without_a_role_gets_403_from_every_api_read(path, api_as):
    response = api_as("roleless").get(path)
    assert response.status_code == 403, response.content
    assert response.json()["type"] == "urn:audioml:problem:forbidden"


def test_staff_without_a_role_still_manage_their_tokens_through_the_api(api_as):
    client = api_as("roleless")
    assert client.get("/api/tokens").status_code == 200
    assert client.post("/api/tokens", {"name": "rotated"}, content_type="application/json").status_code == 201
