"""The panel's Storage clean-up page (superusers, or whom an administrator gives `audioml.collect_garbage`): what
`manage.py gc --dry-run` found at the last scan, by kind (a visit never lists the storage; the scan runs when asked
and is remembered with its time), and a confirmed POST that removes what is still unreferenced, recorded in the
audit trail like `manage.py gc` itself."""

from __future__ import annotations

import json
import os
import time
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from audioml.models import AuditEvent
from tests.factories import ClipFactory, DatasetFactory

pytestmark = pytest.mark.django_db
URL = "/storage/"


def aged(name: str, data: bytes, seconds_ago: float = 2 * 3600) -> str:
    """A file written straight into the storage, as a process killed before committing its row leaves it."""
    name = default_storage.save(name, ContentFile(data))
    when = time.time() - seconds_ago
    os.utime(default_storage.path(name), (when, when))
    return name


@pytest.fixture
def orphans():
    dataset = DatasetFactory(name="kept")
    clips = [ClipFactory(dataset=dataset), ClipFactory(dataset=dataset, status="trashed")]
    for clip in clips:
        when = time.time() - 2 * 3600
        os.utime(default_storage.path(clip.audio.name), (when, when))
    return {
        "referenced": [clip.audio.name for clip in clips],
        "old": [aged(f"clips/{dataset.pk}/ab/{'ab' * 32}.wav", b"c" * 3072),
                aged("models/tones/v7/model.pt2", b"m" * 2048),
                aged(".incoming/tmpa1b2c3.part", b"p" * 10)],
        "young": aged(f"clips/{dataset.pk}/12/{'12' * 32}.wav", b"y" * 100, seconds_ago=5),
    }


def exist(names) -> list[bool]:
    return [default_storage.exists(name) for name in names]


def scanned(client) -> str:
    """The page after its Scan button."""
    response = client.post(URL, {"action": "scan"}, follow=True)
    assert response.redirect_chain == [(URL, 302)]
    return response.content.decode()


def test_a_visit_lists_nothing_until_a_scan_which_shows_the_dry_run_by_kind_and_removes_nothing(
        admin_client, orphans):
    before = admin_client.get(URL)
    assert before.status_code == 200
    assert "Not scanned yet" in before.content.decode() and "Scan the storage" in before.content.decode()
    assert not any(name in before.content.decode() for name in orphans["old"])
    assert "Remove 3 files" not in before.content.decode()
    html = scanned(admin_client)
    assert "Scanned the storage in" in html and "scanned by admin-persona" in html and "Scan again" in html
    rows = html[html.index("<tbody>"):html.index("</tbody>")]
    assert "Clip audio" in rows and "3.0\xa0KB" in rows and "Model artifacts" in rows and "2.0\xa0KB" in rows
    assert "Interrupted uploads" in rows and "10\xa0bytes" in rows
    assert "Remove 3 files (5.0\xa0KB)" in html
    assert "1 unreferenced file younger than 3600 s" in html
    assert all(f"<li>{name}</li>" in html for name in orphans["old"])
    assert orphans["young"] not in html and not any(name in html for name in orphans["referenced"])
    assert all(exist(orphans["old"] + orphans["referenced"] + [orphans["young"]]))
    assert 'href="/storage/">Storage clean-up</a>' in html
    assert not AuditEvent.objects.filter(action="storage.gc").exists()


def test_a_visit_shows_the_remembered_scan_with_its_time_and_never_lists_the_storage_again(admin_client, orphans):
    """A file that lost its row after the scan shows only once the user scans again: visits read what the last
    scan remembered (a listing costs a request per 1,000 objects on a bucket)."""
    scanned(admin_client)
    later = aged("models/other/v1/weights.pt", b"w" * 5)
    visit = admin_client.get(URL).content.decode()
    assert "Remove 3 files (5.0\xa0KB)" in visit and later not in visit
    assert "As of " in visit and "scanned by admin-persona" in visit
    again = scanned(admin_client)
    assert "Remove 4 files" in again and f"<li>{later}</li>" in again
    assert all(exist(orphans["old"] + [later]))


def test_removing_needs_the_confirmation_and_a_post(admin_client, orphans):
    scanned(admin_client)
    refused = admin_client.post(URL, {"shown": "3"})
    assert refused.status_code == 400
    assert "Tick the box to confirm" in refused.content.decode() and "Remove 3 files" in refused.content.decode()
    assert admin_client.get(URL + "?confirm=on").status_code == 200  # a GET never removes anything
    assert all(exist(orphans["old"]))


def test_a_confirmed_post_removes_the_files_without_rows_and_is_audited(admin_client, admin_user, orphans):
    response = admin_client.post(URL, {"confirm": "on", "shown": "3"}, follow=True)
    assert response.redirect_chain == [(URL, 302)]
    html = response.content.decode()
    assert "Removed 3 files without rows (5.0\xa0KB)." in html
    # What the clean-up left is remembered as the latest scan: nothing (no second listing needed to say so).
    assert "Nothing to remove" in html and "cleaned up by admin-persona, which removed 3 files" in html
    assert exist(orphans["old"]) == [False, False, False]
    assert all(exist(orphans["referenced"] + [orphans["young"]]))
    event = AuditEvent.objects.get(action="storage.gc")
    assert event.actor == admin_user and event.object_repr == "media storage"
    assert event.changes["files"] == [None, 3] and event.changes["bytes"] == [None, 5130]
    assert event.changes["by_kind"] == [None, {"clips": 1, "models": 1, ".incoming": 1}]
    assert event.ip_address == "127.0.0.1"


def test_the_message_says_when_the_storage_changed_since_the_page_was_shown(admin_client, orphans):
    aged("models/other/v1/weights.pt", b"w" * 5)
    response = admin_client.post(URL, {"confirm": "on", "shown": "3"}, follow=True)
    assert "Removed 4 files without rows" in response.content.decode()
    assert "(the page had shown 3: files changed meanwhile)" in response.content.decode()


def test_no_role_reaches_the_page_only_superusers_and_whom_an_administrator_gives_the_permission(
        staff_client, staff_user, trainer_client, outsider_client, client, orphans):
    for user_client in (staff_client, trainer_client):
        refused = user_client.get(URL)
        assert refused.status_code == 403 and "Only an administrator can do it" in refused.content.decode()
        assert user_client.post(URL, {"confirm": "on"}).status_code == 403
        assert "Storage clean-up" not in user_client.get("/account/tokens/").content.decode()
    assert outsider_client.post(URL, {"confirm": "on"}).status_code == 403
    anonymous = client.post(URL, {"confirm": "on"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    assert all(exist(orphans["old"]))
    assert not AuditEvent.objects.filter(action="storage.gc").exists()
    staff_user.user_permissions.add(Permission.objects.get(codename="collect_garbage"))
    staff_client.force_login(User.objects.get(pk=staff_user.pk))  # fresh permission cache
    assert staff_client.get(URL).status_code == 200
    assert 'href="/storage/">Storage clean-up</a>' in staff_client.get("/account/tokens/").content.decode()


def test_every_real_clean_up_replaces_the_remembered_scan_with_what_it_left(admin_client, orphans):
    from audioml.sweep import last_scan, scheduled_sweep

    scanned(admin_client)
    call_command("gc", "--dry-run", stdout=StringIO())  # a dry run elsewhere leaves the page's scan alone
    assert last_scan()["count"] == 3 and last_scan()["via"] == "scanned by admin-persona"
    call_command("gc", "--min-age", "86400", stdout=StringIO())  # leaves files the page would list: forgotten
    assert last_scan() is None and "Not scanned yet" in admin_client.get(URL).content.decode()
    scanned(admin_client)
    scheduled_sweep()
    assert (last_scan()["count"], last_scan()["via"]) == (0, "cleaned up by the sweeper, which removed 3 files")
    assert last_scan()["kept_young"] == 1
    assert "cleaned up by the sweeper, which removed 3 files" in admin_client.get(URL).content.decode()
    aged("models/other/v1/weights.pt", b"w" * 5)
    call_command("gc", stdout=StringIO())
    assert last_scan()["via"] == "cleaned up by manage.py gc, which removed 1 file"


def test_manage_py_gc_is_audited_too_but_not_its_dry_run(orphans):
    call_command("gc", "--dry-run", stdout=StringIO())
    assert not AuditEvent.objects.filter(action="storage.gc").exists()
    call_command("gc", stdout=StringIO())
    event = AuditEvent.objects.get(action="storage.gc")
    assert event.actor is None and event.changes["via"] == [None, "manage.py gc"]
    assert event.changes["files"] == [None, 3]
    call_command("gc", stdout=StringIO())  # nothing left: no second event
    assert AuditEvent.objects.filter(action="storage.gc").count() == 1


def test_the_api_runs_the_same_clean_up_for_scripts(api, token_client, trainer_user, orphans):
    def post(client, body):
        return client.post("/api/storage/gc", json.dumps(body), content_type="application/json")

    refused = post(token_client(trainer_user), {})
    assert refused.status_code == 403 and refused.json()["type"] == "urn:audioml:problem:forbidden"
    dry = post(api, {"dry_run": True})
    assert dry.status_code == 200, dry.content
    report = dry.json()
    assert (report["dry_run"], report["removed"], report["freed_bytes"], report["kept_young"]) == (True, 3, 5130, 1)
    assert report["kinds"]["models"] == {"files": ["models/tones/v7/model.pt2"], "bytes": 2048}
    assert all(exist(orphans["old"])) and not AuditEvent.objects.filter(action="storage.gc").exists()
    done = post(api, {})
    assert done.status_code == 200 and done.json()["removed"] == 3 and done.json()["min_age_seconds"] == 3600
    assert exist(orphans["old"]) == [False, False, False] and all(exist(orphans["referenced"] + [orphans["young"]]))
    from audioml.sweep import last_scan

    assert (last_scan()["count"], last_scan()["via"]) == (0, "cleaned up by admin-persona, which removed 3 files")
    event = AuditEvent.objects.get(action="storage.gc")
    assert event.actor.username == "admin-persona" and event.request_id == done["X-Request-ID"]
