"""The panel shows each role only the controls it may use (the server refuses the rest anyway: test_matrix.py)."""

from __future__ import annotations

import pytest

HX = {"HX-Request": "true"}


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


# ---------------------------------------------------------------------------------------------------- datasets


def test_viewer_sees_clips_and_players_but_no_upload_edit_or_trash_controls(panel_as, world):
    world.trashed_clip
    html = page(panel_as("viewer"), "/datasets/kws/")
    assert f'src="/datasets/kws/clips/{world.clip.pk}/audio/"' in html  # listen
    assert "/datasets/kws/export/?layout=labels" in html and "Export selected" in html  # download
    assert 'id="upload-form"' not in html and "data-dropzone" not in html and "data-recorder" not in html
    assert 'class="inline-edit' not in html and "/edit/label/" not in html
    assert f'<td class="value-cell cell-label">yes</td>' in html  # annotations shown as text instead
    assert f"/clips/{world.clip.pk}/trash/" not in html and "Move to trash" not in html
    assert 'href="/datasets/kws/settings/"' not in html
    trashed = page(panel_as("viewer"), "/datasets/kws/?status=trashed")
    assert "/restore/" not in trashed and "Empty trash" not in trashed


def test_trainer_gets_upload_inline_editing_and_trash_but_not_empty_trash(panel_as, world):
    world.trashed_clip
    client = panel_as("trainer")
    html = page(client, "/datasets/kws/")
    assert 'id="upload-form"' in html and "data-dropzone" in html
    assert f'action="/datasets/kws/clips/{world.clip.pk}/edit/label/"' in html
    assert f"/clips/{world.clip.pk}/trash/" in html and "Move to trash" in html
    assert 'href="/datasets/kws/settings/"' in html
    trashed = page(client, "/datasets/kws/?status=trashed")
    assert f"/clips/{world.trashed_clip.pk}/restore/" in trashed
    assert "Empty trash" not in trashed
    settings_page = page(client, "/datasets/kws/settings/")
    assert 'name="description"' in settings_page and "Delete dataset" not in settings_page


def test_superuser_sees_the_permanent_deletions(panel_as, world):
    world.trashed_clip
    client = panel_as("superuser")
    assert "Empty trash" in page(client, "/datasets/kws/?status=trashed")
    assert "Delete dataset" in page(client, "/datasets/kws/settings/")


def test_clip_rows_swapped_in_by_htmx_follow_the_role_too(panel_as, world):
    row = panel_as("trainer").post(f"/datasets/kws/clips/{world.clip.pk}/trash/", headers=HX).content.decode()
    assert f"/clips/{world.clip.pk}/restore/" in row and 'class="inline-edit' in row
    table = panel_as("viewer").get("/datasets/kws/?status=all", headers={**HX, "HX-Target": "clip-table"}).content.decode()
    assert 'id="clip-table"' in table and "<html" not in table
    assert "/restore/" not in table and 'class="inline-edit' not in table


@pytest.mark.parametrize(("persona", "shown"), [("viewer", False), ("approver", False), ("trainer", True)])
def test_new_dataset_form_only_for_those_who_may_create(panel_as, world, persona, shown):
    world.dataset
    html = page(panel_as(persona), "/datasets/")
    assert ('id="new-dataset"' in html) is shown
    assert 'href="/datasets/kws/"' in html


def test_clip_page_is_read_only_for_a_viewer(panel_as, world):
    html = page(panel_as("viewer"), f"/datasets/kws/clips/{world.clip.pk}/")
    assert "<th>Label</th><td>yes</td>" in html
    assert 'name="label"' not in html and "Move to trash" not in html
    assert "Download WAV" in html
    editable = page(panel_as("trainer"), f"/datasets/kws/clips/{world.clip.pk}/")
    assert 'name="label"' in editable and "Move to trash" in editable


# ---------------------------------------------------------------------------------------------------- training


def test_job_controls_only_for_trainers(panel_as, world):
    queued, finished = world.queued_job, world.finished_job
    for persona, shown in (("viewer", False), ("approver", False), ("trainer", True)):
        client = panel_as(persona)
        assert ('href="/training/new/"' in page(client, "/training/")) is shown
        assert ("Cancel job" in page(client, f"/training/jobs/{queued.pk}/")) is shown
        assert ("Run again" in page(client, f"/training/jobs/{finished.pk}/")) is shown


def test_empty_job_list_explains_who_starts_jobs(panel_as, db):
    assert "Jobs appear here once a trainer starts one." in page(panel_as("viewer"), "/training/")
    assert "Pick a dataset and a model name" in page(panel_as("trainer"), "/training/")


# ---------------------------------------------------------------------------------------------------- registry


def test_model_page_alias_controls_only_for_approvers(panel_as, world):
    world.model
    viewer = page(panel_as("viewer"), "/models/keywords/")
    for control in ("Point alias…", "Edit description", "Roll back to v1", "/aliases/production/delete/", "Promote…",
                    "Train a new version"):
        assert control not in viewer, control
    assert "Approvers move aliases" in viewer
    assert "<th>Trained</th><th></th>" not in viewer  # no empty actions column
    assert 'class="try-form"' in viewer  # trying a model is reading

    approver = page(panel_as("approver"), "/models/keywords/")
    for control in ("Point alias…", "Edit description", "Roll back to v1", "/aliases/production/delete/", "Promote…"):
        assert control in approver, control
    assert "Train a new version" not in approver
    assert "<th>Trained</th><th></th>" in approver

    trainer = page(panel_as("trainer"), "/models/keywords/")
    assert "Train a new version" in trainer and "Point alias…" not in trainer


def test_version_page_controls_follow_the_role(panel_as, world):
    world.model
    viewer = page(panel_as("viewer"), "/models/keywords/v3/")
    assert "Edit notes, tags and status" not in viewer and "Promote to production…" not in viewer and "Delete…" not in viewer
    assert "/models/keywords/v3/artifacts/model.onnx" in viewer  # downloads stay
    approver = page(panel_as("approver"), "/models/keywords/v3/")
    assert "Edit notes, tags and status" in approver and "Promote to production…" in approver
    assert "Delete…" not in approver
    assert "Delete…" in page(panel_as("superuser"), "/models/keywords/v3/")


# ---------------------------------------------------------------------------------------------------- navigation


def test_navigation_shows_only_reachable_sections(panel_as, db):
    roleless = page(panel_as("roleless"), "/account/tokens/")
    for link in ('href="/datasets/"', 'href="/training/"', 'href="/models/"', 'href="/audit/"', 'href="/admin/"'):
        assert link not in roleless, link
    assert "Log out" in roleless
    viewer = page(panel_as("viewer"), "/account/tokens/")
    for link in ('href="/datasets/"', 'href="/training/"', 'href="/models/"', 'href="/audit/"', 'href="/admin/"'):
        assert link in viewer, link
