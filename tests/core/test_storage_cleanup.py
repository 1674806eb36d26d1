"""The panel's Storage clean-up page (superusers, or whom an administrator gives `audioml.collect_garbage`): what
`manage.py gc --dry-run` found at the last scan, by kind (a visit never lists the storage; the scan runs on a worker
when asked, never two at once, and is remembered with its time), and a confirmed POST that removes what is still
unreferenced, recorded in the audit trail like `manage.py gc` itself."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django_q.conf import Conf
from django_q.models import OrmQ, Task

from audioml.models import AuditEvent
from tests.brokers import BrokerUnderTest
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


def scanned(client, monkeypatch) -> str:
    """The page after its Scan button, the scan run by django-q2 in this process (its sync mode)."""
    monkeypatch.setattr(Conf, "SYNC", True)
    response = client.post(URL, {"action": "scan"}, follow=True)
    monkeypatch.setattr(Conf, "SYNC", False)
    assert response.redirect_chain == [(URL, 302)]
    return response.content.decode()


def queued_scans() -> list[OrmQ]:
    return list(OrmQ.objects.filter(key="default"))


def work_off(row: OrmQ):
    """What a worker of the default cluster does with a queued task: take it off the queue and run it."""
    row.delete()
    return BrokerUnderTest("orm").deliver(row.payload)


def poll(client):
    return client.get(URL, headers={"HX-Request": "true"})


def test_a_visit_lists_nothing_until_a_scan_which_shows_the_dry_run_by_kind_and_removes_nothing(
        admin_client, orphans, monkeypatch):
    before = admin_client.get(URL)
    assert before.status_code == 200
    assert "Not scanned yet" in before.content.decode() and "Scan the storage" in before.content.decode()
    assert not any(name in before.content.decode() for name in orphans["old"])
    assert "Remove 3 files" not in before.content.decode()
    html = scanned(admin_client, monkeypatch)
    assert "Scanning…" not in html and "scanned by admin-persona" in html and "Scan again" in html
    assert Task.objects.get(name="storage-scan").success and not queued_scans()  # run by django-q2, in sync mode
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


def test_a_visit_shows_the_remembered_scan_with_its_time_and_never_lists_the_storage_again(admin_client, orphans, monkeypatch):
    """A file that lost its row after the scan shows only once the user scans again: visits read what the last
    scan remembered (a listing costs a request per 1,000 objects on a bucket)."""
    scanned(admin_client, monkeypatch)
    later = aged("models/other/v1/weights.pt", b"w" * 5)
    visit = admin_client.get(URL).content.decode()
    assert "Remove 3 files (5.0\xa0KB)" in visit and later not in visit
    assert "As of " in visit and "scanned by admin-persona" in visit
    again = scanned(admin_client, monkeypatch)
    assert "Remove 4 files" in again and f"<li>{later}</li>" in again
    assert all(exist(orphans["old"] + [later]))


def test_removing_needs_the_confirmation_and_a_post(admin_client, orphans, monkeypatch):
    scanned(admin_client, monkeypatch)
    refused = admin_client.post(URL, {"shown": "3"})
    assert refused.status_code == 400
    assert "Tick the box to confirm" in refused.content.decode() and "Remove 3 files" in refused.content.decode()
    assert admin_client.get(URL + "?confirm=on").status_code == 200  # a GET never removes anything
    assert all(exist(orphans["old"]))


def cleaned_up(client, monkeypatch, shown: str) -> object:
    """The page after its confirmed Remove button, the clean-up run by django-q2 in this process (its sync mode)."""
    monkeypatch.setattr(Conf, "SYNC", True)
    response = client.post(URL, {"confirm": "on", "shown": shown}, follow=True)
    monkeypatch.setattr(Conf, "SYNC", False)
    return response


def test_a_confirmed_post_removes_the_files_without_rows_and_is_audited(admin_client, admin_user, orphans,
                                                                        monkeypatch):
    response = cleaned_up(admin_client, monkeypatch, "3")
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


def test_the_message_says_when_the_storage_changed_since_the_page_was_shown(admin_client, orphans, monkeypatch):
    aged("models/other/v1/weights.pt", b"w" * 5)
    response = cleaned_up(admin_client, monkeypatch, "3")
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


def test_every_real_clean_up_replaces_the_remembered_scan_with_what_it_left(admin_client, orphans, monkeypatch):
    from audioml.sweep import last_scan, scheduled_sweep

    scanned(admin_client, monkeypatch)
    call_command("gc", "--dry-run", stdout=StringIO())  # a dry run elsewhere leaves the page's scan alone
    assert last_scan()["count"] == 3 and last_scan()["via"] == "scanned by admin-persona"
    call_command("gc", "--min-age", "86400", stdout=StringIO())  # leaves files the page would list: forgotten
    assert last_scan() is None and "Not scanned yet" in admin_client.get(URL).content.decode()
    scanned(admin_client, monkeypatch)
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


def test_a_scan_runs_on_a_worker_while_the_page_polls_and_a_second_click_queues_no_second_one(
        admin_client, client, orphans):
    page = admin_client.post(URL, {"action": "scan"}, follow=True).content.decode()
    assert 'data-scan-state="running"' in page and "Scanning…" in page and "waiting for a worker" in page
    assert "asked by admin-persona" in page and 'hx-trigger="every 2s"' in page
    assert '<button type="submit" class="btn" disabled>Scanning…</button>' in page
    assert "Not scanned yet" in page and "Remove 3 files" not in page  # nothing listed in the request
    (row,) = queued_scans()
    other_admin = User.objects.create_superuser("second-admin", "second@example.com", "pw")
    client.force_login(other_admin)
    for user_client in (admin_client, client):
        again = user_client.post(URL, {"action": "scan"}, follow=True).content.decode()
        assert "A scan is already queued (asked by admin-persona at " in again
        assert "this page shows its result when it is done" in again
    assert queued_scans() == [row]
    waiting = poll(admin_client)
    assert waiting.status_code == 200 and 'hx-trigger="every 2s"' in waiting.content.decode()
    assert "<h1>" not in waiting.content.decode()  # the fragment only

    summary = work_off(row)
    assert (summary["count"], summary["freed_bytes"], summary["via"]) == (3, 5130, "scanned by admin-persona")
    done = poll(admin_client)
    assert done.status_code == 286  # htmx stops polling and shows the result
    html = done.content.decode()
    assert "hx-trigger" not in html and "Scanning…" not in html and "Scan again" in html
    assert "scanned by admin-persona" in html and "Remove 3 files (5.0\xa0KB)" in html
    assert all(f"<li>{name}</li>" in html for name in orphans["old"])
    assert all(exist(orphans["old"])) and not AuditEvent.objects.filter(action="storage.gc").exists()
    admin_client.post(URL, {"action": "scan"})
    assert len(queued_scans()) == 1  # done: the next click queues the next scan


def test_a_clean_up_runs_on_a_worker_while_the_page_polls_and_no_scan_runs_beside_it(admin_client, admin_user,
                                                                                     orphans, monkeypatch):
    scanned(admin_client, monkeypatch)
    page = admin_client.post(URL, {"confirm": "on", "shown": "3"}, follow=True).content.decode()
    assert 'data-scan-state="running"' in page and "Removing files…" in page and "waiting for a worker" in page
    assert '<button type="submit" class="btn" disabled>Removing files…</button>' in page
    assert "Remove 3 files" not in page  # no second confirmation while this one is queued
    assert all(exist(orphans["old"]))  # nothing removed in the request
    (row,) = queued_scans()
    again = admin_client.post(URL, {"action": "scan"}, follow=True).content.decode()
    assert "A clean-up is already queued (asked by admin-persona at " in again
    assert queued_scans() == [row]
    assert 'hx-trigger="every 2s"' in poll(admin_client).content.decode()

    done = work_off(row)
    assert (done["removed"], done["freed_bytes"], done["shown"]) == (3, 5130, 3)
    finished = poll(admin_client)
    assert finished.status_code == 286
    html = finished.content.decode()
    assert 'data-scan-state="cleaned"' in html and "Removed 3 files without rows (5.0\xa0KB)." in html
    assert "Nothing to remove" in html and "Scan again" in html
    assert exist(orphans["old"]) == [False, False, False] and all(exist(orphans["referenced"] + [orphans["young"]]))
    event = AuditEvent.objects.get(action="storage.gc")  # audited as the user who confirmed, from their address
    assert event.actor == admin_user and event.ip_address == "127.0.0.1"
    admin_client.post(URL, {"action": "scan"})
    assert 'data-scan-state="cleaned"' not in admin_client.get(URL).content.decode()  # until the next one


def test_a_failed_clean_up_says_so(admin_client, orphans, monkeypatch):
    import audioml.sweep

    admin_client.post(URL, {"confirm": "on", "shown": "3"})
    (row,) = queued_scans()

    def broken(**kwargs):
        raise OSError("the disk went away")

    monkeypatch.setattr(audioml.sweep, "collect_garbage", broken)
    with pytest.raises(OSError):
        work_off(row)
    html = poll(admin_client).content.decode()
    assert 'data-scan-state="failed"' in html and "The clean-up asked by admin-persona at " in html
    assert "failed:</strong> OSError: the disk went away" in html and all(exist(orphans["old"]))


def test_a_failed_scan_says_why_keeps_the_last_result_and_can_be_retried(admin_client, orphans, settings,
                                                                       monkeypatch):
    from audioml.settings import s3_storage_options
    from tests.ops.servers import free_port

    scanned(admin_client, monkeypatch)
    options = {**s3_storage_options("unreachable"), "endpoint_url": f"http://127.0.0.1:{free_port()}",
               "access_key": "test", "secret_key": "test", "region_name": "us-east-1"}
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage",
                                                          "OPTIONS": options}}
    admin_client.post(URL, {"action": "scan"})
    (row,) = queued_scans()
    with pytest.raises(Exception, match="Could not connect to the endpoint URL"):
        work_off(row)  # raised again, so that django-q2 records the task as failed too
    response = poll(admin_client)
    assert response.status_code == 286
    html = response.content.decode()
    assert 'data-scan-state="failed"' in html and "The scan asked by admin-persona at " in html
    assert "failed:</strong> EndpointConnectionError: Could not connect to the endpoint URL" in html
    assert "What is below is the last scan that finished." in html and "Remove 3 files" in html
    assert "Scan again" in html and "disabled" not in html
    admin_client.post(URL, {"action": "scan"})
    assert len(queued_scans()) == 1
    assert 'data-scan-state="running"' in admin_client.get(URL).content.decode()  # the failure is gone


def test_a_scan_no_worker_finishes_is_given_up_on_and_another_can_be_queued(admin_client, orphans):
    from django.core.cache import cache

    from audioml.sweep import SCAN_RUNNING_KEY, scan_give_up_seconds

    admin_client.post(URL, {"action": "scan"})
    (row,) = queued_scans()
    marker = cache.get(SCAN_RUNNING_KEY)
    lost = {**marker, "queued_at": marker["queued_at"] - timedelta(seconds=scan_give_up_seconds() + 1)}
    cache.set(SCAN_RUNNING_KEY, lost, timeout=None)
    response = poll(admin_client)
    assert response.status_code == 286
    assert "no worker finished it within 11 minutes of it being queued (no worker took it): check that the " \
           "workers run (manage.py qcluster)" in response.content.decode()
    admin_client.post(URL, {"action": "scan"})
    assert len(queued_scans()) == 2 and cache.get(SCAN_RUNNING_KEY)["token"] != marker["token"]
    work_off(row)  # the lost scan turning up late still only remembers its result; the new one still runs
    assert 'data-scan-state="running"' in admin_client.get(URL).content.decode()
    assert "scanned by admin-persona" in admin_client.get(URL).content.decode()


def test_recent_files_that_rows_reference_are_not_counted_as_left_alone(admin_client, orphans, monkeypatch):
    """"N unreferenced files younger than …" counts only files without a row: a dataset of new clips (all younger
    than the minimum age, all referenced) showed every one of its clips there."""
    from audioml.sweep import collect_garbage

    fresh = DatasetFactory(name="fresh")
    for _ in range(3):
        ClipFactory(dataset=fresh)
    assert collect_garbage(dry_run=True).kept_young == 1  # the fixture's young orphan only
    assert "1 unreferenced file younger than 3600 s" in scanned(admin_client, monkeypatch)


def test_a_scan_with_no_young_orphans_says_the_rule_instead_of_counting_zero(admin_client, monkeypatch):
    """Nothing young and unreferenced: the page states the minimum-age rule, not "0 unreferenced files … were left
    alone"."""
    DatasetFactory(name="fresh")

    html = scanned(admin_client, monkeypatch)

    assert "0 unreferenced files" not in html
    assert "Unreferenced files younger than 3600 s" in html and "are left alone" in html
