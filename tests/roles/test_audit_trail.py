"""Every change that matters leaves one audit event: who, what, before and after, and from which address;
from the panel, the API and the management commands alike."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from audioml.models import ApiToken, AuditEvent
from tests.audio import distinct_wav, zip_bytes
from tests.roles.actions import wav


def only(action: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action)


@pytest.fixture
def trainer_panel(trainer_user) -> Client:
    client = Client(REMOTE_ADDR="10.0.0.7")
    client.force_login(trainer_user)
    return client


@pytest.fixture
def trainer_api(trainer_user) -> Client:
    _, raw = ApiToken.issue(trainer_user, "tests")
    return Client(REMOTE_ADDR="10.0.0.8", headers={"Authorization": f"Bearer {raw}"})


@pytest.fixture
def approver_panel(approver_user) -> Client:
    client = Client(REMOTE_ADDR="10.0.0.9")
    client.force_login(approver_user)
    return client


@pytest.fixture
def approver_api(approver_user) -> Client:
    _, raw = ApiToken.issue(approver_user, "tests")
    return Client(REMOTE_ADDR="10.0.0.10", headers={"Authorization": f"Bearer {raw}"})


def patch(client, url, body):
    return client.patch(url, json.dumps(body), content_type="application/json")


# ----------------------------------------------------------------------------------------------- datasets


def test_dataset_create_and_delete_from_the_panel(trainer_panel, admin_client, db):
    trainer_panel.post("/datasets/", {"name": "birds", "description": "", "sample_rate": 22050})
    created = only("dataset.create")
    assert created.changes == {"name": [None, "birds"], "sample_rate": [None, 22050]}
    assert (created.actor_name, created.ip_address, created.object_repr) == ("trainer-persona", "10.0.0.7", "birds")
    admin_client.post("/datasets/birds/delete/", {"confirm_name": "birds"})
    deleted = only("dataset.delete")
    assert (deleted.object_repr, deleted.object_id, deleted.changes) == ("birds", created.object_id, {"clips": [0, 0]})


def test_dataset_create_and_delete_through_the_api(trainer_api, api, db):
    assert trainer_api.post("/api/datasets", {"name": "birds"}, content_type="application/json").status_code == 201
    assert only("dataset.create").ip_address == "10.0.0.8"
    assert api.delete("/api/datasets/birds").status_code == 204
    assert only("dataset.delete").actor_name == "admin-persona"


def test_clip_edits_record_before_and_after_in_the_panel(trainer_panel, world):
    clip = world.clip
    trainer_panel.post(f"/datasets/kws/clips/{clip.pk}/", {"label": "no", "transcript": "hello", "score": "0.5",
                                                           "speaker": "", "notes": ""})
    trainer_panel.post(f"/datasets/kws/clips/{clip.pk}/edit/speaker/", {"value": "ann"}, headers={"HX-Request": "true"})
    full, inline = AuditEvent.objects.filter(action="clip.edit").order_by("id")
    assert full.changes == {"label": ["yes", "no"], "transcript": ["", "hello"], "score": [None, 0.5]}
    assert inline.changes == {"speaker": ["", "ann"]}
    assert full.object_type == "datasets_app.clip" and full.object_id == str(clip.pk)
    # Saving the same values again changes nothing and records nothing.
    trainer_panel.post(f"/datasets/kws/clips/{clip.pk}/edit/speaker/", {"value": "ann"}, headers={"HX-Request": "true"})
    assert AuditEvent.objects.filter(action="clip.edit").count() == 2


def test_clip_edits_record_before_and_after_through_the_api(trainer_api, world):
    patch(trainer_api, f"/api/datasets/kws/clips/{world.clip.pk}", {"label": "no", "score": 0.25})
    assert only("clip.edit").changes == {"label": ["yes", "no"], "score": [None, 0.25]}


def test_trash_and_restore_record_the_status_change(trainer_panel, trainer_api, world):
    clip = world.clip
    trainer_panel.post(f"/datasets/kws/clips/{clip.pk}/trash/")
    trainer_panel.post(f"/datasets/kws/clips/{clip.pk}/restore/")
    assert only("clip.trash").changes == {"status": ["active", "trashed"]}
    assert only("clip.restore").changes == {"status": ["trashed", "active"]}
    trainer_api.post("/api/datasets/kws/clips/trash", {"ids": [clip.pk]}, content_type="application/json")
    bulk = AuditEvent.objects.filter(action="clip.trash").latest("id")
    assert bulk.changes == {"clip_ids": [None, [clip.pk]]} and bulk.ip_address == "10.0.0.8"


def test_uploads_and_imports_record_the_new_clip_ids(trainer_panel, trainer_api, world):
    world.dataset
    trainer_panel.post("/datasets/kws/upload/", {"files": [wav("a.wav", 201)], "label": "yes"})
    trainer_api.post("/api/datasets/kws/clips", {"files": [wav("b.wav", 202)]})
    trainer_api.post("/api/datasets/kws/import", {"file": io.BytesIO(zip_bytes({"no/c.wav": distinct_wav(203)}))})
    panel, api_upload, archive = AuditEvent.objects.filter(action="clip.upload").order_by("id")
    ids = {name: pk for pk, name in world.dataset.clips.values_list("pk", "original_name")}
    assert panel.changes == {"clip_ids": [None, [ids["a.wav"]]]} and panel.ip_address == "10.0.0.7"
    assert api_upload.changes == {"clip_ids": [None, [ids["b.wav"]]]}
    assert archive.changes["clip_ids"] == [None, [ids["no/c.wav"]]]


def test_import_dataset_command_records_the_dataset_and_its_clips(tmp_path, trainer_user):
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "1.wav").write_bytes(distinct_wav(301))
    call_command("import_dataset", "cmd", str(tmp_path), "--create", "--user", "trainer-persona", verbosity=0,
                 stdout=io.StringIO())
    created, uploaded = only("dataset.create"), only("clip.upload")
    assert created.actor_name == uploaded.actor_name == "trainer-persona"
    assert created.ip_address is None and created.changes["via"] == [None, "import_dataset"]
    assert len(uploaded.changes["clip_ids"][1]) == 1


# ----------------------------------------------------------------------------------------------- training


def test_job_start_and_cancel_from_the_panel(trainer_panel, world):
    world.trainable
    trainer_panel.post("/training/new/", {"dataset": "kws", "model_name": "kws-model", "preset": "quick"})
    started = only("job.start")
    assert started.changes["status"] == [None, "queued"]
    assert started.changes["dataset"] == [None, "kws"] and started.changes["snapshot_clips"] == [None, 10]
    trainer_panel.post(f"/training/jobs/{started.object_id}/cancel/")
    cancelled = only("job.cancel")
    assert cancelled.object_id == started.object_id and cancelled.changes == {"status": ["queued", "cancelled"]}


def test_job_start_rerun_and_cancel_through_the_api(trainer_api, world):
    running = world.queued_job
    running.status = "running"
    running.save(update_fields=["status"])
    trainer_api.post(f"/api/jobs/{running.pk}/cancel")
    assert only("job.cancel").changes == {"status": ["running", "stopping"]}
    trainer_api.post(f"/api/jobs/{world.finished_job.pk}/rerun")
    assert only("job.start").changes["rerun_of"] == [None, world.finished_job.pk]


def test_train_command_records_the_job_start(world):
    world.trainable
    call_command("train", "kws", "--model", "cmd-model", "--preset", "quick", stdout=io.StringIO(), stderr=io.StringIO())
    event = only("job.start")
    assert event.actor is None and event.changes["via"] == [None, "manage.py train"]


# ----------------------------------------------------------------------------------------------- registry


def test_version_registration_is_recorded(world):
    world.versions
    events = AuditEvent.objects.filter(action="version.register").order_by("id")
    assert [event.object_repr for event in events] == ["keywords v1", "keywords v2", "keywords v3"]


def test_alias_moves_record_the_versions_in_the_panel(approver_panel, world):
    world.model
    approver_panel.post("/models/keywords/aliases/promote/", {"alias": "production", "version": 3, "note": "better"})
    approver_panel.post("/models/keywords/aliases/production/rollback/", {"note": "misfires"})
    approver_panel.post("/models/keywords/aliases/production/delete/", {"note": "retired"})
    assert only("alias.set").changes == {"version": [2, 3]}
    assert only("alias.rollback").changes == {"version": [3, 2]}
    assert only("alias.delete").changes == {"version": [2, None]}
    assert set(AuditEvent.objects.filter(action__startswith="alias.").values_list("ip_address", flat=True)) == {"10.0.0.9"}


def test_alias_moves_record_the_versions_through_the_api(approver_api, world):
    world.model
    approver_api.put("/api/models/keywords/aliases/staging", json.dumps({"version": 1}), content_type="application/json")
    assert only("alias.set").changes == {"version": [None, 1]}
    assert only("alias.set").object_repr.startswith("keywords")


def test_archiving_and_unarchiving_a_version(approver_panel, approver_api, world):
    world.model
    approver_panel.post("/models/keywords/v3/edit/", {"description": "", "tags": "lobby", "status": "archived"})
    assert only("version.archive").changes == {"tags": [[], ["lobby"]], "status": ["active", "archived"]}
    patch(approver_api, "/api/models/keywords/versions/3", {"status": "active"})
    assert only("version.unarchive").changes == {"status": ["archived", "active"]}
    patch(approver_api, "/api/models/keywords/versions/3", {"description": "kiosk mic"})
    assert only("version.update").changes == {"description": ["", "kiosk mic"]}


# ----------------------------------------------------------------------------------------------- tokens and roles


def test_token_create_and_revoke_work_for_staff_without_a_role_and_are_audited(roleless_client, roleless_staff):
    assert roleless_client.get("/account/tokens/").status_code == 200
    roleless_client.post("/account/tokens/", {"name": "ci"})
    token = ApiToken.objects.get(user=roleless_staff)
    roleless_client.post(f"/account/tokens/{token.pk}/revoke/")
    assert list(AuditEvent.objects.filter(object_type="audioml.apitoken").values_list("action", flat=True)
                .order_by("id")) == ["token.create", "token.revoke"]


def test_revoking_a_token_in_admin_is_audited(admin_client, viewer_user):
    token, _ = ApiToken.issue(viewer_user, "laptop")
    admin_client.post("/admin/audioml/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert only("token.revoke").actor_name == "admin-persona"


def test_audit_page_filters_by_action_and_is_read_only_for_every_role(viewer_client, world):
    world.model
    html = viewer_client.get("/audit/", {"action": "version."}).content.decode()
    assert "version.register" in html and "keywords v3" in html
    assert html.count('method="post"') == 1  # logging out is the only thing to post on this page
