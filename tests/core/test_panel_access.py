"""Every panel URL: anonymous users go to login, logged-in non-staff get 403, staff get in."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Not panel pages: they have their own authentication (tests/core/test_api_basics.py, test_metrics.py).
PUBLIC_PREFIXES = ("admin/", "api/", "login/", "logout/", "media/", "static/", "metrics")


def _walk(patterns, prefix=""):
    for entry in patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            yield prefix + route, entry


def _concrete(route: str) -> str:
    route = re.sub(r"<int:[^>]+>", "999999", route)
    route = re.sub(r"<(?:str|slug):[^>]+>", "no-such-thing", route)
    route = re.sub(r"<path:[^>]+>", "no/such/thing", route)
    route = re.sub(r"<[^>]+>", "x", route)
    return "/" + route.lstrip("^").rstrip("$")


PANEL_ROUTES = sorted(
    {
        _concrete(route)
        for route, pattern in _walk(get_resolver().url_patterns)
        if not route.lstrip("^").startswith(PUBLIC_PREFIXES)
    }
)


def test_panel_routes_were_found():
    assert "/" in PANEL_ROUTES
    assert "/datasets/" in PANEL_ROUTES
    assert "/training/" in PANEL_ROUTES
    assert "/models/" in PANEL_ROUTES


def test_every_panel_view_is_marked_staff_only():
    unprotected = [
        route
        for route, pattern in _walk(get_resolver().url_patterns)
        if not route.lstrip("^").startswith(PUBLIC_PREFIXES) and not getattr(pattern.callback, "staff_only", False)
    ]
    assert unprotected == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", PANEL_ROUTES)
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", PANEL_ROUTES)
def test_logged_in_non_staff_gets_403(outsider_client, url):
    response = outsider_client.get(url)
    assert response.status_code == 403


@pytest.mark.parametrize("url", ["/datasets/", "/training/", "/models/", "/account/tokens/"])
def test_staff_reach_the_panel(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for section in ("Datasets", "Training", "Models"):
        assert section in html
    assert "staff-persona" in html  # the user menu
    assert "/static/htmx.min.js" in html


def test_home_redirects_staff_to_datasets(staff_client):
    response = staff_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/datasets/"


def test_login_page_logs_staff_in(client, staff_user):
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post("/login/", {"username": "staff-persona", "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert client.get("/datasets/").status_code == 200


def test_wrong_password_shows_an_error(client, staff_user):
    response = client.post("/login/", {"username": "staff-persona", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_admin_is_mounted(admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert b"AudioML administration" in response.content


def test_htmx_is_served_from_static(client):
    from django.contrib.staticfiles import finders

    path = finders.find("htmx.min.js")
    assert path is not None
    assert "htmx" in open(path).read(200)
