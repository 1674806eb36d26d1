from __future__ import annotations

import os

import pytest
from django.test import Client

from audioml.models import ApiToken
from tests.factories import AdminFactory, StaffFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path):
    """Every test gets its own media and work folders."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.WORK_DIR = tmp_path / "work"
    settings.MEDIA_ROOT.mkdir()
    settings.WORK_DIR.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings.MEDIA_ROOT


@pytest.fixture
def admin_user(db):
    return AdminFactory(username="admin-persona")


@pytest.fixture
def staff_user(db):
    """Staff, but not a superuser."""
    return StaffFactory(username="staff-persona")


@pytest.fixture
def outsider(db):
    """Logged in, but not staff: the panel and the API refuse them."""
    return UserFactory(username="outsider-persona")


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def outsider_client(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


@pytest.fixture
def api_token(admin_user) -> str:
    _, raw = ApiToken.issue(admin_user, "tests")
    return raw


@pytest.fixture
def api(api_token) -> Client:
    """A client that authenticates with a bearer token and checks CSRF like the real server."""
    return Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {api_token}"})
