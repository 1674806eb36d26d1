"""Panel pages and their htmx fragments: jobs list, new-job form with live summary, job page."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.factories import DatasetFactory, TrainingJobFactory
from tests.training.conftest import TINY, add_clips
from training_app import tasks
from training_app.models import TrainingJob

HX = {"HX-Request": "true"}


@pytest.fixture
def trained(tones, submit):
    job = submit(tones)
    assert tasks.run_training_job(job.pk) == "succeeded"
    job.refresh_from_db()
    return job


def test_jobs_list_shows_jobs_with_status_and_queue_position(tones, submit, staff_client):
    first, second = submit(tones, model_name="first"), submit(tones, model_name="second")
    TrainingJob.objects.filter(pk=first.pk).update(status="running", phase="training", progress=42.0)
    response = staff_client.get("/training/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "1 running, 1 queued" in html
    assert "position 1 in the queue" in html
    assert "Training · 42%" in html
    assert 'hx-trigger="every 2s"' in html


def test_jobs_list_fragment_polls_while_jobs_are_active_and_stops_after(tones, submit, staff_client):
    job = submit(tones)
    active = staff_client.get("/training/", headers=HX)
    assert active.status_code == 200
    assert active.content.decode().lstrip().startswith('<section class="card" id="jobs"')
    assert 'hx-trigger="every 2s"' in active.content.decode()
    assert "<html" not in active.content.decode()
    job.cancel()
    stopped = staff_client.get("/training/", headers=HX)
    assert stopped.status_code == 286
    assert "cancelled" in stopped.content.decode()
    assert "hx-trigger" not in stopped.content.decode()


def test_jobs_list_reaps_lost_workers_when_viewed(tones, submit, staff_client, settings):
    from datetime import timedelta

    from django.utils import timezone

    job = submit(tones)
    long_ago = timezone.now() - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS * 2)
    TrainingJob.objects.filter(pk=job.pk).update(status="running", started_at=long_ago, heartbeat_at=long_ago)
    html = staff_client.get("/training/").content.decode()
    assert "worker lost" in html
    assert TrainingJob.objects.get(pk=job.pk).status == "failed"


def test_jobs_list_filters_by_status_and_dataset(tones, submit, staff_client):
    other = DatasetFactory(name="other")
    add_clips(other, "a", 5, 300.0)
    add_clips(other, "b", 5, 900.0)
    submit(tones, model_name="on-tones")
    submit(other, model_name="on-other")
    html = staff_client.get("/training/?dataset=other").content.decode()
    assert "on-other" in html and "on-tones" not in html
    html = staff_client.get("/training/?status=succeeded").content.decode()
    assert "No jobs match these filters" in html


def test_empty_jobs_list_invites_a_first_job(staff_client):
    html = staff_client.get("/training/").content.decode()
    assert "No training jobs yet" in html
    assert reverse("job-new") in html
    assert "hx-trigger" not in html


def test_new_job_form_shows_the_data_summary_for_the_chosen_dataset(tones, staff_client):
    response = staff_client.get("/training/new/?dataset=tones")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<option value="tones" selected>' in html
    assert "12</div><div class=\"label\">labelled clips" in html
    assert "<details class=\"advanced\">" in html
    assert "Start training</button>" in html and "disabled" not in html.split("Start training")[0][-200:]


def test_new_job_form_says_a_voice_ignores_the_preset_and_augmentation(db, staff_client):
    """Synthesis' own defaults replace the presets' ("Quick: up to 40 epochs" does not hold for a voice), and its
    augmentation switches are hidden (CSS) since a voice trains without augmentation."""
    html = staff_client.get("/training/new/").content.decode()
    note = html[html.index('data-task="synthesis"'):]
    assert "every preset trains it for up to 200 epochs" in note[:note.index("</fieldset>")]
    assert "without augmentation" in note[:note.index("</fieldset>")]


def test_summary_fragment_lists_labels_and_split(tones, staff_client):
    response = staff_client.get("/training/new/summary/", {"dataset": "tones", "preset": "quick"}, headers=HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<aside class="card job-summary" id="summary"')
    assert "<td>high</td><td class=\"num\">6</td>" in html
    assert "Split:</strong>" in html
    assert "disabled" not in html


def test_summary_split_notes_begin_with_a_capital(tones, staff_client):
    tones.clips.update(speaker="ann")
    html = staff_client.get("/training/new/summary/", {"dataset": "tones", "preset": "quick"}, headers=HX).content.decode()
    assert "All clips come from one speaker (&#x27;ann&#x27;)" in html
    assert "all clips come" not in html


def test_summary_fragment_blocks_submit_when_data_cannot_train(db, staff_client):
    dataset = DatasetFactory(name="small")
    add_clips(dataset, "yes", 6, 300.0)
    add_clips(dataset, "noise", 3, 2000.0)
    html = staff_client.get("/training/new/summary/", {"dataset": "small", "preset": "quick"}, headers=HX).content.decode()
    assert "label &#x27;noise&#x27; has 3 clips, at least 5 are needed" in html
    assert 'disabled aria-disabled="true"' in html


def test_summary_fragment_reports_an_invalid_setting(tones, staff_client):
    html = staff_client.get(
        "/training/new/summary/", {"dataset": "tones", "preset": "quick", "val_fraction": "0.9"}, headers=HX
    ).content.decode()
    assert "Validation share: must be at least 0.05 and at most 0.5, got 0.9" in html  # named as the form names it
    assert 'disabled aria-disabled="true"' in html
    assert "<td>high</td><td class=\"num\">6</td>" in html  # the data stays in view


def test_summary_of_detection_without_its_label_names_the_field_and_shows_the_labels_to_choose_from(
        tones, staff_client):
    html = staff_client.get(
        "/training/new/summary/", {"dataset": "tones", "preset": "quick", "task": "detection"}, headers=HX
    ).content.decode()
    assert "Label(s) to detect: name the label(s) to detect, comma-separated" in html
    assert "positive_label" not in html
    assert "<td>high</td><td class=\"num\">6</td>" in html and "<td>low</td>" in html
    assert 'disabled aria-disabled="true"' in html


def test_posting_the_form_queues_a_job_with_the_changed_settings(tones, staff_client, staff_user,
                                                                  django_capture_on_commit_callbacks):
    form = {"dataset": "tones", "model_name": "from-form", "preset": "quick", "epochs": "3", "seed": "9",
            "clip_seconds": "0.5", "time_shift": "on", "spec_augment": "on"}
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/training/new/", form)
    job = TrainingJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/training/jobs/{job.pk}/"
    assert job.overrides == {"epochs": 3, "seed": 9, "clip_seconds": 0.5, "noise": False}
    assert job.created_by == staff_user and job.task_id
    assert f"Job #{job.pk} is queued." in staff_client.get(response["Location"]).content.decode()


def test_the_advanced_settings_show_the_chosen_task_and_presets_own_values(db, staff_client):
    html = staff_client.get("/training/new/").content.decode()  # classification, balanced
    assert 'name="epochs" min="1" max="1000" step="1" placeholder="60"' in html
    assert 'name="batch_size" min="1" max="512" step="1" placeholder="16"' in html
    assert 'name="noise" id="id_noise" checked' in html
    assert "preset default" not in html and "Default 16" not in html
    defaults = json.loads(html.split('<script id="task-defaults" type="application/json">')[1].split("</script>")[0])
    assert defaults["synthesis"]["quick"]["epochs"] == 200 and defaults["classification"]["quick"]["epochs"] == 40
    assert defaults["transcription"]["balanced"]["noise"] is False
    assert defaults["regression"]["thorough"]["learning_rate"] == 0.003

    # A form sent back with an error shows the values of the task and preset it was sent with.
    form = {"model_name": "m", "task": "synthesis", "preset": "quick", "epochs": "5000"}
    html = staff_client.post("/training/new/", form).content.decode()
    assert 'step="any" placeholder="0.002" aria-describedby="id_learning_rate_helptext"' in html


def test_a_switch_counts_as_changed_when_it_differs_from_the_tasks_own_value(tones, staff_client):
    from training_app.forms import JobForm

    def overrides(**data):
        form = JobForm({"dataset": "tones", "model_name": "m", "preset": "quick", **data})
        assert form.is_valid(), form.errors
        return form.overrides()

    on = {"time_shift": "on", "noise": "on", "spec_augment": "on"}
    assert overrides(task="transcription", spec_augment="on") == {}  # transcription's own: no noise, no shifts
    assert overrides(task="transcription", **on) == {}  # its CTC trainer reads neither switch (config.SETTING_TASKS)
    assert overrides(task="transcription") == {"spec_augment": False}
    assert overrides(task="classification", **on) == {}
    assert overrides(task="regression", time_shift="on", spec_augment="on") == {}
    assert overrides(task="synthesis", **on) == {}  # a voice reads no augmentation switch


def test_posting_an_invalid_setting_shows_it_on_the_field(tones, staff_client):
    form = {"dataset": "tones", "model_name": "m", "preset": "quick", "epochs": "5000"}
    response = staff_client.post("/training/new/", form)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Must be at least 1 and at most 1000, got 5000" in html
    assert "<details class=\"advanced\" open>" in html
    assert TrainingJob.objects.count() == 0


def test_posting_untrainable_data_explains_why(db, staff_client):
    dataset = DatasetFactory(name="small")
    add_clips(dataset, "yes", 6, 300.0)
    response = staff_client.post("/training/new/", {"dataset": "small", "model_name": "m", "preset": "quick"})
    assert response.status_code == 200
    assert "only one label (&#x27;yes&#x27;)" in response.content.decode()
    assert TrainingJob.objects.count() == 0


def test_job_page_of_a_finished_job_shows_results(trained, staff_client):
    response = staff_client.get(f"/training/jobs/{trained.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "hx-trigger" not in html
    assert "Network vs. baseline" in html
    assert "Confusion matrix" in html and 'class="table heat confusion"' in html
    assert "Precision" in html and "Recall" in html
    assert "<svg" in html and "series-val" in html and "polyline" in html
    assert "Run again" in html and "Cancel job" not in html
    assert "Succeeded in" in html  # the log tail
    assert f'href="/datasets/{trained.dataset.name}/"' in html
    assert f'href="/models/{trained.model_name}/"' in html


def test_job_page_says_when_unsure_keyword_answers_are_answered_unknown(trained, staff_client):
    open_set = {"threshold": 0.61, "keep": 0.99, "unknown_label": "unknown", "evaluated_on": "test", "unsure": 3,
                "n": 40, "keyword_clips_lost": 1, "wrong_answers_caught": 2, "accuracy_with_rule": 0.9,
                "top_label_accuracy": 0.85, "rule": True}
    TrainingJob.objects.filter(pk=trained.pk).update(metrics={**trained.metrics, "open_set": open_set})
    html = staff_client.get(f"/training/jobs/{trained.pk}/").content.decode()
    assert "Rule: an unsure answer is answered as unknown" in html
    assert "Accuracy of the top label alone (without the rule)" in html and "85.0%" in html

    without_rule = {**trained.metrics, "open_set": {**open_set, "rule": False}}
    TrainingJob.objects.filter(pk=trained.pk).update(metrics=without_rule)
    html = staff_client.get(f"/training/jobs/{trained.pk}/").content.decode()
    assert "Rule:" not in html and "<code>unsure_as_unknown</code> is off" in html
    assert "Accuracy if unsure answers were unknown" in html and "90.0%" in html


def test_job_page_fragment_polls_while_running_and_stops_when_finished(tones, submit, trained, staff_client):
    job = submit(tones)
    TrainingJob.objects.filter(pk=job.pk).update(
        status="running", phase="training", progress=55.0, eta_seconds=75.0,
        epochs=[{"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_accuracy": 0.5, "lr": 0.01, "seconds": 1.0}],
    )
    running = staff_client.get(f"/training/jobs/{job.pk}/", headers=HX)
    html = running.content.decode()
    assert running.status_code == 200
    assert html.lstrip().startswith('<div id="job-live"')
    assert 'hx-trigger="every 2s"' in html
    assert "55%" in html and "about 1\u00a0min 15\u00a0s left" in html
    assert "Epoch 1 of at most 2" in html
    assert "Cancel job" in html
    finished = staff_client.get(f"/training/jobs/{trained.pk}/", headers=HX)
    assert finished.status_code == 286
    assert "Confusion matrix" in finished.content.decode()
    assert "hx-trigger" not in finished.content.decode()


def test_failed_job_page_shows_error_and_traceback(tones, submit, staff_client):
    from django.core.files.storage import default_storage

    job = submit(tones)
    default_storage.delete(job.snapshot[0]["audio"])
    tasks.run_training_job(job.pk)
    html = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()
    assert "Training failed." in html
    assert "no longer have their audio file" in html
    assert "<summary>Traceback</summary>" in html
    log = staff_client.get(f"/training/jobs/{job.pk}/log/").content.decode()
    assert "Traceback (most recent call last)" in log


def test_cancel_button_cancels_a_queued_job(tones, submit, staff_client):
    job = submit(tones)
    response = staff_client.post(f"/training/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled"
    assert "was removed from the queue" in staff_client.get(response["Location"]).content.decode()
    again = staff_client.post(f"/training/jobs/{job.pk}/cancel/", follow=True)
    assert "has already cancelled" in again.content.decode()


def test_cancel_needs_post(tones, submit, staff_client):
    job = submit(tones)
    assert staff_client.get(f"/training/jobs/{job.pk}/cancel/").status_code == 405
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"


def test_run_again_button_queues_a_new_job(tones, submit, staff_client, django_capture_on_commit_callbacks):
    job = submit(tones)
    job.cancel()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/training/jobs/{job.pk}/rerun/")
    again = TrainingJob.objects.exclude(pk=job.pk).get()
    assert response["Location"] == f"/training/jobs/{again.pk}/"
    assert again.rerun_of == job and again.overrides == TINY


def test_run_again_explains_when_the_data_no_longer_trains(tones, submit, staff_client):
    job = submit(tones)
    job.cancel()
    tones.clips.filter(label="low").delete()
    response = staff_client.post(f"/training/jobs/{job.pk}/rerun/", follow=True)
    assert "Cannot run job" in response.content.decode()
    assert "only one label" in response.content.decode()


def test_unknown_job_page_is_404(db, staff_client):
    assert staff_client.get("/training/jobs/424242/").status_code == 404


def test_panel_refuses_non_staff(tones, submit, outsider_client, client):
    job = submit(tones)
    assert outsider_client.get(f"/training/jobs/{job.pk}/").status_code == 403
    assert outsider_client.post(f"/training/jobs/{job.pk}/cancel/").status_code == 403
    assert client.post(f"/training/jobs/{job.pk}/cancel/").status_code == 302
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"


def _config_tables(html: str) -> tuple[str, str]:
    """The job page's configuration: the settings the task reads, and those it does not (folded away)."""
    section = html[html.index("<h2>Configuration</h2>"):]
    section = section[:section.index("</section>")]
    if '<details class="ignored-settings">' not in section:
        return section, ""
    read, ignored = section.split('<details class="ignored-settings">')
    return read, ignored


def test_job_page_lists_the_settings_its_task_reads_and_folds_away_the_rest(db, staff_client):
    config = {"preset": "quick", "epochs": 3, "learning_rate": 0.008, "positive_label": None, "negative_weight": 4.0,
              "target_far": 0.01, "target_fa_per_hour": 0.5, "espeak_voice": "en-us", "text_case": "lower",
              "numbers": "as_written", "mixup": 0.0, "noise": True}
    job = TrainingJobFactory(task="classification", config=config, overrides={"numbers": "words"})
    read, ignored = _config_tables(staff_client.get(f"/training/jobs/{job.pk}/").content.decode())
    assert ">learning_rate</th>" in read and ">epochs</th>" in read and ">target_far</th>" in read
    assert ">mixup</th>" in read
    for name in ("espeak_voice", "target_fa_per_hour", "negative_weight", "positive_label", "text_case"):
        assert f">{name}</th>" not in read and f">{name}</th>" in ignored  # still on record, folded away
    assert "5 settings a classification job does not read" in ignored
    assert ">numbers</th>" in read  # changed from the preset: shown whatever task reads it

    detection = TrainingJobFactory(task="detection", config=config, status="failed", phase="done")  # no results to draw
    read, ignored = _config_tables(staff_client.get(f"/training/jobs/{detection.pk}/").content.decode())
    assert ">target_fa_per_hour</th>" in read and ">positive_label</th>" in read and ">negative_weight</th>" in read
    for name in ("espeak_voice", "text_case", "target_far", "mixup"):
        assert f">{name}</th>" in ignored and f">{name}</th>" not in read

    voice = TrainingJobFactory(task="synthesis", config=config, status="failed", phase="done")
    read, ignored = _config_tables(staff_client.get(f"/training/jobs/{voice.pk}/").content.decode())
    assert ">espeak_voice</th>" in read and ">epochs</th>" in read
    assert ">noise</th>" in ignored and ">noise</th>" not in read  # a voice trains without augmentation


def test_a_job_with_only_settings_its_task_reads_has_nothing_folded_away(db, staff_client):
    job = TrainingJobFactory(task="classification", config={"preset": "quick", "epochs": 3, "mixup": 0.0})
    read, ignored = _config_tables(staff_client.get(f"/training/jobs/{job.pk}/").content.decode())
    assert ">mixup</th>" in read and ignored == ""


def test_new_job_form_reads_each_task_and_preset_as_one_sentence(db, staff_client):
    html = staff_client.get("/training/new/").content.decode()
    assert "good accuracy for a few hundred clips (the default)" in html
    assert "the default:" not in html  # was "Balanced: up to 60 epochs, the default: good accuracy …"
    assert "(a label)? Calibrated to few false accepts per hour" in html


def test_jobs_list_names_every_result_figure(db, staff_client):
    TrainingJobFactory(model_name="words", metrics={"accuracy": 0.9, "baseline": {"accuracy": 0.5}})
    TrainingJobFactory(model_name="quality", task="regression", metrics={"spearman": 0.8, "baseline": {"spearman": 0.5}})
    html = staff_client.get("/training/").content.decode()
    assert '90.0% <span class="muted small">accuracy</span>' in html  # was a bare 90.0% beside "0.800 Spearman"
    assert '<span class="muted small">Spearman</span>' in html


def test_job_configuration_says_what_an_empty_trainer_means(tones, submit, staff_client):
    job = submit(tones)
    assert job.config["trainer"] == ""
    html = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()
    assert '>trainer</th><td><span class="muted">built-in</span>' in html
    assert 'title="an external trainer the administrator configured' in html


def test_the_forms_task_parts_come_from_config_setting_tasks(db):
    """The new-job form's per-task settings are those config.SETTING_TASKS gives to one task alone (the list the
    job page and applies() read), not a second list kept by hand."""
    from training_app.forms import JobForm
    from training_app.ml.config import SETTING_TASKS

    form = JobForm()
    parts = {task: [field.name for field in fields] for task, fields in form.task_fields}
    assert parts == {"detection": ["positive_label", "target_fa_per_hour"],
                     "transcription": ["text_case", "punctuation", "numbers"],
                     "synthesis": ["text_frontend", "espeak_voice", "init_from"]}
    for task, names in parts.items():
        assert all(SETTING_TASKS[name] == (task,) for name in names), task
    shown_apart = {name for names in parts.values() for name in names}
    assert [name for name in form.fields if len(SETTING_TASKS.get(name, ())) == 1 and name not in shown_apart] == []


def test_the_form_hides_and_the_job_page_folds_the_window_settings_a_transcription_ignores(db, staff_client):
    """config.SETTING_TASKS: a transcription reads no clip length, time shifts or noise mixing, nor the window
    models' architecture; the form marks those fields with the tasks that read them (CSS hides the rest)."""
    from pathlib import Path

    from django.conf import settings

    html = staff_client.get("/training/new/").content.decode()

    def wrapper(name: str, start: str) -> str:
        before = html[:html.index(f'id="id_{name}"')]
        return before[before.rindex(start):]

    assert 'data-tasks="classification regression detection"' in wrapper("clip_seconds", '<div class="field')
    for name in ("time_shift", "noise"):
        assert 'data-tasks="classification regression detection">' in wrapper(name, '<label class="switch"'), name
    assert 'data-tasks="classification regression detection transcription">' in wrapper("spec_augment", '<label class="switch"')
    assert "data-tasks" not in wrapper("epochs", '<div class="field')  # every task reads it
    css = (Path(settings.BASE_DIR) / "static" / "app.css").read_text()
    assert '[value="transcription"]:checked) [data-tasks]:not([data-tasks~="transcription"])' in css

    config = {"preset": "quick", "epochs": 3, "architecture": "cnn", "convs_per_block": 1, "clip_seconds": 1.0,
              "noise": False, "time_shift": False, "spec_augment": True, "warp": True, "text_case": "lower"}
    job = TrainingJobFactory(task="transcription", config=config, status="failed", phase="done")
    read, ignored = _config_tables(staff_client.get(f"/training/jobs/{job.pk}/").content.decode())
    for name in ("architecture", "convs_per_block", "clip_seconds", "noise", "time_shift"):
        assert f">{name}</th>" in ignored and f">{name}</th>" not in read, name
    for name in ("spec_augment", "warp", "text_case", "epochs"):
        assert f">{name}</th>" in read, name
