from __future__ import annotations

import hashlib
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from audioml.models import ApiToken


def test_staff_creates_a_token_in_the_panel_and_only_its_hash_is_stored(staff_client, staff_user):
    response = staff_client.post("/account/tokens/", {"name": "nightly import"})
    assert response.status_code == 200
    raw = response.context["new_token"]
    assert raw.startswith("aml_")
    assert raw.encode() in response.content
    token = ApiToken.objects.get(user=staff_user)
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {token.token_hash, token.prefix, token.name}
    # The raw value is shown once: the list page no longer carries it.
    assert raw.encode() not in staff_client.get("/account/tokens/").content


def test_token_form_requires_a_name(staff_client):
    response = staff_client.post("/account/tokens/", {"name": ""})
    assert response.status_code == 200
    assert b"This field is required" in response.content
    assert ApiToken.objects.count() == 0


def test_token_authenticates_api_requests(staff_user):
    _, raw = ApiToken.issue(staff_user, "script")
    response = Client().get("/api/tokens", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    assert [t["name"] for t in response.json()] == ["script"]
    assert ApiToken.objects.get().last_used_at is not None


def test_revoked_token_gets_401_problem_details(staff_client, staff_user):
    token, raw = ApiToken.issue(staff_user, "script")
    staff_client.post(f"/account/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = Client().get("/api/tokens", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401 and body["title"] == "Unauthorized"
    assert body["request_id"] == response["X-Request-ID"]


def test_wrong_token_gets_401(db):
    response = Client().get("/api/tokens", headers={"Authorization": "Bearer aml_not-a-real-token"})
    assert response.status_code == 401
    assert response.json()["type"] == "urn:audioml:problem:unauthenticated"


def test_expired_token_gets_401(staff_user):
    _, raw = ApiToken.issue(staff_user, "old", expires_at=timezone.now() - timedelta(minutes=1))
    assert Client().get("/api/tokens", headers={"Authorization": f"Bearer {raw}"}).status_code == 401


def test_token_of_a_user_who_lost_staff_gets_403(staff_user):
    _, raw = ApiToken.issue(staff_user, "script")
    staff_user.is_staff = False
    staff_user.save()
    response = Client().get("/api/tokens", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 403
    assert response.json()["status"] == 403


def test_no_credentials_gets_401(db):
    assert Client().get("/api/tokens").status_code == 401


def test_api_create_and_revoke_token_with_a_token(api, admin_user):
    created = api.post("/api/tokens", {"name": "ci"}, content_type="application/json")
    assert created.status_code == 201
    new_raw = created.json()["token"]
    assert Client().get("/api/tokens", headers={"Authorization": f"Bearer {new_raw}"}).status_code == 200
    revoked = api.post(f"/api/tokens/{created.json()['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False
    assert Client().get("/api/tokens", headers={"Authorization": f"Bearer {new_raw}"}).status_code == 401


def test_cannot_revoke_someone_elses_token(api, staff_user):
    other, _ = ApiToken.issue(staff_user, "theirs")
    response = api.post(f"/api/tokens/{other.pk}/revoke")
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


def test_session_post_without_csrf_is_refused(staff_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post("/api/tokens", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert ApiToken.objects.count() == 0


def test_non_staff_session_gets_403_from_api(outsider_client):
    response = outsider_client.get("/api/tokens")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
