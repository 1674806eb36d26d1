"""The permission matrix: every persona tries every action, in the panel and through the API.

Allowed: the action succeeds and writes its audit event. Refused: 403 (the panel's 403 page, or problem details
from the API) and nothing is changed or recorded."""

from __future__ import annotations

import pytest

from audioml.models import AuditEvent
from tests.roles.actions import ALLOWED, API_ACTIONS, PANEL_ACTIONS
from tests.roles.conftest import PERSONAS


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", PANEL_ACTIONS, ids=str)
def test_panel_permission_matrix(action, persona, panel_as, world):
    client = panel_as(persona)
    response = action.run(client, world)
    if persona in ALLOWED[action.needs]:
        assert response.status_code == action.status, (response.status_code, response.content[:500])
        if action.audit:
            assert AuditEvent.objects.filter(action=action.audit, actor_name=f"{persona_name(persona)}").exists()
    else:
        assert response.status_code == 403
        html = response.content.decode()
        assert "You can’t open this page" in html
        assert ("no AudioML role yet" in html) if persona == "roleless" else ("Your role does not allow this" in html)
        if action.audit:
            assert not AuditEvent.objects.filter(action=action.audit).exists()


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", API_ACTIONS, ids=str)
def test_api_permission_matrix(action, persona, api_as, world):
    client = api_as(persona)
    response = action.run(client, world)
    if persona in ALLOWED[action.needs]:
        assert response.status_code == action.status, (response.status_code, response.content[:500])
        if action.audit:
            event = AuditEvent.objects.get(action=action.audit)
            assert event.actor_name == persona_name(persona)
            assert event.request_id  # ties the event to the API request's log lines
    else:
        assert response.status_code == 403
        assert response["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 403 and problem["type"] == "urn:audioml:problem:forbidden"
        assert ("no AudioML role yet" in problem["detail"]) if persona == "roleless" else ("(permission: " in problem["detail"])
        if action.audit:
            assert not AuditEvent.objects.filter(action=action.audit).exists()


def persona_name(persona: str) -> str:
    """The user name the persona fixtures give (tests/conftest.py)."""
    return {"superuser": "admin-persona", "roleless": "roleless-persona"}.get(persona, f"{persona}-persona")
