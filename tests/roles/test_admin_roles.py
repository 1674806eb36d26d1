"""Django admin follows the same roles: staff see and change only what their role allows; custom actions check
their permission; changes made in admin reach the audit trail."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from audioml.models import AuditEvent
from datasets_app.models import Clip, Dataset
from registry_app.models import ModelVersion
from training_app.models import TrainingJob


def clip_form(clip: Clip, **changes) -> dict:
    values = {"label": clip.label, "transcript": clip.transcript, "score": "", "speaker": clip.speaker,
              "notes": clip.notes, "status": clip.status}
    return {**values, **changes}


@pytest.mark.parametrize(("persona", "status"), [("viewer", 200), ("trainer", 200), ("approver", 200), ("roleless", 403)])
def test_admin_clip_list_needs_a_role(panel_as, world, persona, status):
    world.clip
    assert panel_as(persona).get("/admin/datasets_app/clip/").status_code == status


def test_viewer_sees_clips_read_only_in_admin_and_cannot_run_the_trash_action(panel_as, world):
    client = panel_as("viewer")
    page = client.get(f"/admin/datasets_app/clip/{world.clip.pk}/change/").content.decode()
    assert "Download WAV" in page
    assert 'name="label"' not in page and 'name="_save"' not in page
    listing = client.get("/admin/datasets_app/clip/").content.decode()
    assert "trash_clips" not in listing
    response = client.post("/admin/datasets_app/clip/", {"action": "trash_clips", "_selected_action": [world.clip.pk]},
                           follow=True)
    assert response.status_code == 200
    assert Clip.objects.get(pk=world.clip.pk).status == "active"
    assert client.post(f"/admin/datasets_app/clip/{world.clip.pk}/change/", clip_form(world.clip, label="no")).status_code == 403
    assert Clip.objects.get(pk=world.clip.pk).label == "yes"
    assert not AuditEvent.objects.filter(action__startswith="clip.").exists()


def test_trainer_edits_and_trashes_clips_in_admin_with_audit(panel_as, world):
    client = panel_as("trainer")
    response = client.post(f"/admin/datasets_app/clip/{world.clip.pk}/change/", clip_form(world.clip, label="maybe"))
    assert response.status_code == 302
    edit = AuditEvent.objects.get(action="clip.edit")
    assert edit.changes == {"label": ["yes", "maybe"]} and edit.actor_name == "trainer-persona"
    assert "trash_clips" in client.get("/admin/datasets_app/clip/").content.decode()
    client.post("/admin/datasets_app/clip/", {"action": "trash_clips", "_selected_action": [world.clip.pk]})
    assert Clip.objects.get(pk=world.clip.pk).status == "trashed"
    assert AuditEvent.objects.get(action="clip.trash").changes == {"clip_ids": [None, [world.clip.pk]]}


def test_trainer_cannot_delete_datasets_in_admin_but_a_superuser_can_with_audit(panel_as, world):
    dataset = world.dataset
    url = f"/admin/datasets_app/dataset/{dataset.pk}/delete/"
    assert panel_as("trainer").get(url).status_code == 403
    assert panel_as("trainer").post(url, {"post": "yes"}).status_code == 403
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert panel_as("superuser").post(url, {"post": "yes"}).status_code == 302
    event = AuditEvent.objects.get(action="dataset.delete")
    assert (event.object_repr, event.changes, event.actor_name) == ("kws", {"clips": [2, 0]}, "admin-persona")
    assert event.object_id == str(dataset.pk)


def test_dataset_edits_in_admin_record_before_and_after(panel_as, world):
    dataset = world.dataset
    response = panel_as("trainer").post(f"/admin/datasets_app/dataset/{dataset.pk}/change/",
                                        {"name": "kws", "description": "Keyword spotting"})
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="dataset.update").changes == {"description": ["Made in a test", "Keyword spotting"]}


def test_only_trainers_can_cancel_jobs_in_admin(panel_as, world):
    job = world.queued_job
    for persona in ("viewer", "approver"):
        client = panel_as(persona)
        assert "cancel_selected" not in client.get("/admin/training_app/trainingjob/").content.decode()
        client.post("/admin/training_app/trainingjob/", {"action": "cancel_selected", "_selected_action": [job.pk]})
        assert TrainingJob.objects.get(pk=job.pk).status == "queued"
    response = panel_as("trainer").post("/admin/training_app/trainingjob/",
                                        {"action": "cancel_selected", "_selected_action": [job.pk]}, follow=True)
    assert f"Removed from the queue: #{job.pk}." in response.content.decode()
    event = AuditEvent.objects.get(action="job.cancel")
    assert (event.changes, event.actor_name) == ({"status": ["queued", "cancelled"]}, "trainer-persona")


def test_versions_are_editable_in_admin_by_approvers_only(panel_as, world):
    version = world.versions[2]
    url = f"/admin/registry_app/modelversion/{version.pk}/change/"
    assert 'name="description"' not in panel_as("trainer").get(url).content.decode()
    assert panel_as("trainer").post(url, {"description": "", "tags": "", "status": "archived"}).status_code == 403
    assert 'name="description"' in panel_as("approver").get(url).content.decode()
    response = panel_as("approver").post(url, {"description": "old mic", "tags": "", "status": "archived"})
    assert response.status_code == 302
    assert ModelVersion.objects.get(pk=version.pk).status == "archived"
    event = AuditEvent.objects.get(action="version.archive")
    assert event.changes == {"description": ["", "old mic"], "status": ["active", "archived"]}


def test_deleting_a_version_in_admin_is_for_superusers_and_audited(panel_as, world):
    version = world.versions[2]
    url = f"/admin/registry_app/modelversion/{version.pk}/delete/"
    assert panel_as("approver").post(url, {"post": "yes"}).status_code == 403
    assert panel_as("superuser").post(url, {"post": "yes"}).status_code == 302
    assert not ModelVersion.objects.filter(pk=version.pk).exists()
    event = AuditEvent.objects.get(action="version.delete")
    assert (event.object_repr, event.object_id) == ("keywords v3", str(version.pk))


def test_roles_cannot_manage_users_but_a_superuser_changing_groups_is_audited(panel_as, persona_user):
    viewer = persona_user("viewer")
    for persona in ("viewer", "trainer", "approver"):
        assert panel_as(persona).get(f"/admin/auth/user/{viewer.pk}/change/").status_code == 403
    trainer_group = Group.objects.get(name="trainer")
    response = panel_as("superuser").post(f"/admin/auth/user/{viewer.pk}/change/", {
        "username": viewer.username, "is_active": "on", "is_staff": "on", "groups": [trainer_group.pk],
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    event = AuditEvent.objects.get(action="user.roles")
    assert event.changes == {"groups": [["viewer"], ["trainer"]]}
    assert event.actor_name == "admin-persona" and event.object_repr == "viewer-persona"
