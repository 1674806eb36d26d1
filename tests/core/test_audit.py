from __future__ import annotations

import pytest
from django.test import Client

from audioml import audit
from audioml.models import ApiToken, AuditEvent
from tests.factories import DatasetFactory


def test_login_and_failed_login_are_audited_with_the_address(staff_user):
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.post("/login/", {"username": "staff-persona", "password": "wrong"})
    client.post("/login/", {"username": "staff-persona", "password": "correct horse battery staple"})
    failed, ok = AuditEvent.objects.order_by("id")
    assert (failed.action, failed.actor, failed.object_repr) == ("user.login_failed", None, "staff-persona")
    assert (ok.action, ok.actor, ok.ip_address) == ("user.login", staff_user, "10.1.2.3")


def test_token_create_and_revoke_are_audited(staff_client, staff_user):
    staff_client.post("/account/tokens/", {"name": "ci"})
    token = ApiToken.objects.get()
    staff_client.post(f"/account/tokens/{token.pk}/revoke/")
    staff_client.post(f"/account/tokens/{token.pk}/revoke/")  # a second revoke changes nothing
    actions = list(AuditEvent.objects.filter(object_type="audioml.apitoken").order_by("id").values_list("action", flat=True))
    assert actions == ["token.create", "token.revoke"]
    assert AuditEvent.objects.filter(action="token.create").get().actor == staff_user


def test_api_token_changes_are_audited(api):
    created = api.post("/api/tokens", {"name": "scripted"}, content_type="application/json").json()
    api.post(f"/api/tokens/{created['id']}/revoke")
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["token.create", "token.revoke"]
    assert AuditEvent.objects.first().request_id


def test_audit_events_cannot_be_edited_or_deleted(db):
    event = audit.record("dataset.create", DatasetFactory())
    event.action = "something.else"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(action="x")
    assert AuditEvent.objects.get().action == "dataset.create"


def test_audit_page_lists_and_filters_events(staff_client, staff_user):
    dataset = DatasetFactory(name="birds")
    audit.record("dataset.create", dataset, user=staff_user)
    audit.record("clip.edit", dataset, user=staff_user, changes={"label": ["yes", "no"]})
    page = staff_client.get("/audit/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "dataset.create" in html and "clip.edit" in html and "yes → no" in html
    filtered = staff_client.get("/audit/", {"action": "clip."}, headers={"HX-Request": "true"})
    fragment = filtered.content.decode()
    assert "clip.edit" in fragment and "dataset.create" not in fragment
    assert "<html" not in fragment


def test_audit_page_shows_lists_as_text_and_only_the_first_items_of_a_long_one(staff_client, staff_user):
    dataset = DatasetFactory(name="birds")
    audit.record("clip.upload", dataset, user=staff_user, changes={
        "clip_ids": [None, list(range(1, 26))], "source": [None, ["https://example.org/a", "corpus X"]],
        "by_kind": [None, {"clips": 2, "models": 1}],
    })
    html = staff_client.get("/audit/").content.decode()
    assert "∅ → 1, 2, 3" in html and "19, 20 … and 5 more" in html and "21, 22" not in html
    assert "∅ → https://example.org/a, corpus X" in html and "∅ → clips: 2, models: 1" in html


def test_audit_page_names_object_types_readably_and_filters_by_either_name(staff_client, staff_user):
    audit.record("version.delete", user=staff_user, object_type="registry_app.modelversion", object_repr="marlo v1")
    audit.record("storage.gc", user=staff_user, object_type="storage", object_repr="media storage")
    html = staff_client.get("/audit/").content.decode()
    assert ('href="?object_type=registry_app.modelversion" title="registry_app.modelversion: show only these">'
            "model version</a> marlo v1") in html
    assert ">storage</a> media storage" in html  # no model of that name: shown as recorded
    for wanted in ("model version", "registry_app.modelversion", "ModelVersion"):
        fragment = staff_client.get("/audit/", {"object_type": wanted}, headers={"HX-Request": "true"}).content.decode()
        assert "marlo v1" in fragment and "media storage" not in fragment, wanted


def test_audit_rows_name_their_columns_for_the_stacked_phone_layout(staff_client, staff_user):
    audit.record("clip.edit", DatasetFactory(name="birds"), user=staff_user, changes={"label": ["yes", "no"]})
    html = staff_client.get("/audit/").content.decode()
    assert 'class="table table-stack audit-table"' in html  # static/app.css stacks it under 640 px
    rows = html.count("<tr>") - 1  # the header's
    assert rows >= 1
    for column in ("When", "Who", "Action", "Object", "Changes", "From"):
        assert html.count(f'data-label="{column}"') == rows, column
    assert f'data-label="Who">{staff_user.username}</td>' in html


def test_audit_filter_rejects_reversed_dates(staff_client):
    response = staff_client.get("/audit/", {"since": "2026-02-01", "until": "2026-01-01"})
    assert "must be on or before" in response.content.decode()


def test_audit_is_read_only_in_admin(admin_client, admin_user):
    event = audit.record("dataset.create", DatasetFactory(), user=admin_user)
    assert admin_client.get("/admin/audioml/auditevent/").status_code == 200
    change = admin_client.get(f"/admin/audioml/auditevent/{event.pk}/change/")
    assert change.status_code == 200
    assert b'name="action"' not in change.content  # shown, not editable
    assert admin_client.get("/admin/audioml/auditevent/add/").status_code == 403
    assert admin_client.post(f"/admin/audioml/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
