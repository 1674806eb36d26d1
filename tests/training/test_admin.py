"""Django admin: jobs are read-only except for the cancel action; logs are a read-only inline."""

from __future__ import annotations

from django.contrib.auth.models import Permission

from tests.factories import StaffFactory
from training_app.models import TrainingJob


def test_admin_lists_jobs_and_shows_every_field_read_only(tones, submit, admin_client):
    job = submit(tones)
    listing = admin_client.get("/admin/training_app/trainingjob/")
    assert listing.status_code == 200
    assert "tones-model" in listing.content.decode()
    page = admin_client.get(f"/admin/training_app/trainingjob/{job.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="model_name"' not in html and 'name="status"' not in html
    for field in ("snapshot_hash", "task_id", "cancel_requested", "heartbeat_at", "worker"):
        assert f"field-{field}" in html
    assert job.snapshot_hash in html
    assert 'name="_save"' not in html
    assert "Queued by admin-persona" in html  # the JobLog inline
    assert admin_client.get("/admin/training_app/trainingjob/add/").status_code == 403
    assert admin_client.get(f"/admin/training_app/trainingjob/{job.pk}/delete/").status_code == 403


def test_posting_changes_to_a_job_is_refused(tones, submit, admin_client):
    job = submit(tones)
    response = admin_client.post(f"/admin/training_app/trainingjob/{job.pk}/change/",
                                 {"model_name": "hacked", "status": "succeeded"})
    assert response.status_code == 403
    job.refresh_from_db()
    assert (job.model_name, job.status) == ("tones-model", "queued")


def test_cancel_action_cancels_queued_and_running_jobs_and_skips_finished(tones, submit, admin_client):
    queued, running, done = submit(tones), submit(tones), submit(tones)
    TrainingJob.objects.filter(pk=running.pk).update(status="running")
    TrainingJob.objects.filter(pk=done.pk).update(status="succeeded")
    response = admin_client.post(
        "/admin/training_app/trainingjob/",
        {"action": "cancel_selected", "_selected_action": [queued.pk, running.pk, done.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert f"Removed from the queue: #{queued.pk}." in html
    assert f"Asked to stop at the next batch: #{running.pk}." in html
    assert f"Already finished, left as they were: #{done.pk}." in html
    statuses = dict(TrainingJob.objects.values_list("pk", "status"))
    assert statuses == {queued.pk: "cancelled", running.pk: "running", done.pk: "succeeded"}
    assert TrainingJob.objects.get(pk=running.pk).cancel_requested


def test_cancel_action_needs_the_change_permission(tones, submit, client):
    job = submit(tones)
    viewer = StaffFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_trainingjob"))
    client.force_login(viewer)
    listing = client.get("/admin/training_app/trainingjob/")
    assert listing.status_code == 200
    assert "cancel_selected" not in listing.content.decode()
    client.post("/admin/training_app/trainingjob/", {"action": "cancel_selected", "_selected_action": [job.pk]})
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"
