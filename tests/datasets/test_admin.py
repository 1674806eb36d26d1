"""Django admin: search, filters, editable annotations with an audio player, no ad-hoc clip creation."""

from __future__ import annotations

import pytest

from datasets_app.models import Clip
from tests.factories import ClipFactory, DatasetFactory

pytestmark = pytest.mark.django_db


def test_clip_changelist_search_and_filters(admin_client):
    dataset = DatasetFactory(name="kws")
    ClipFactory(dataset=dataset, label="yes", transcript="open the pod bay doors", original_name="hal.wav")
    ClipFactory(dataset=dataset, label="no", original_name="dave.wav")
    html = admin_client.get("/admin/datasets_app/clip/", {"q": "pod bay"}).content.decode()
    assert "hal.wav" in html and "dave.wav" not in html
    html = admin_client.get("/admin/datasets_app/clip/", {"has_label": "yes", "status__exact": "active"}).content.decode()
    assert "hal.wav" in html and "dave.wav" in html
    assert 'name="form-0-label"' in html  # label editable in the list


def test_clip_change_form_has_a_player_and_saves_edits(admin_client, admin_user):
    clip = ClipFactory(dataset=DatasetFactory(name="kws"), label="yes")
    url = f"/admin/datasets_app/clip/{clip.pk}/change/"
    html = admin_client.get(url).content.decode()
    assert f'<audio controls preload="metadata" src="/datasets/kws/clips/{clip.pk}/audio/"' in html
    response = admin_client.post(url, {"label": "no", "transcript": "fixed", "score": "0.4", "speaker": "", "notes": "", "status": "active"})
    assert response.status_code == 302, response.content.decode()[:2000]
    clip.refresh_from_db()
    assert (clip.label, clip.transcript, clip.score, clip.updated_by) == ("no", "fixed", 0.4, admin_user)
    bad = admin_client.post(url, {"label": "../x", "transcript": "", "score": "3", "speaker": "", "notes": "", "status": "active"})
    assert bad.status_code == 200
    assert "cannot contain" in bad.content.decode()


def test_clips_cannot_be_added_by_hand(admin_client):
    assert admin_client.get("/admin/datasets_app/clip/add/").status_code == 403


def test_admin_actions_trash_and_restore(admin_client):
    clips = [ClipFactory() for _ in range(2)]
    ids = [str(clip.pk) for clip in clips]
    admin_client.post("/admin/datasets_app/clip/", {"action": "trash_clips", "_selected_action": ids})
    assert Clip.objects.trashed().count() == 2
    admin_client.post("/admin/datasets_app/clip/", {"action": "restore_clips", "_selected_action": ids})
    assert Clip.objects.active().count() == 2


def test_dataset_admin_lists_and_locks_the_rate(admin_client):
    dataset = DatasetFactory(name="kws")
    ClipFactory(dataset=dataset)
    html = admin_client.get("/admin/datasets_app/dataset/", {"q": "kws"}).content.decode()
    assert "kws" in html
    change = admin_client.get(f"/admin/datasets_app/dataset/{dataset.pk}/change/").content.decode()
    assert 'name="sample_rate"' not in change
    assert "Open in the panel" in change


def test_staff_without_a_role_cannot_use_admin_for_clips(roleless_client):
    assert roleless_client.get("/admin/datasets_app/clip/").status_code in (302, 403)
