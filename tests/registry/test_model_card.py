"""Provenance: datasets carry a licence, a source and a consent note, clips a source; a version's model card (page,
Markdown download, API) lists them with the snapshot, configuration, metrics, code version, fine-tune base and
who approved its aliases."""

from __future__ import annotations

import json

import pytest

from datasets_app.models import Clip
from registry_app.models import Alias
from tests.factories import ClipFactory, DatasetFactory
from training_app.snapshot import snapshot_clips, snapshot_hash


@pytest.fixture
def carded(register, admin_user, approver_user):
    """v1 and v2 of "keywords" trained on a dataset with its provenance; v2 promoted by the approver, then rolled
    back to v1 by the admin."""
    dataset = DatasetFactory(name="field-recordings")
    dataset.update({"licence": "CC-BY-4.0", "source": "https://example.org/corpus",
                    "consent_note": "Every speaker signed release form v2."}, by=admin_user)
    clips = [ClipFactory(dataset=dataset, label="yes") for _ in range(3)] + [ClipFactory(dataset=dataset, label="no")]
    clips[0].edit({"source": "https://freesound.org/s/123"}, by=admin_user)
    clips[1].edit({"source": "https://freesound.org/s/123"}, by=admin_user)
    entries = snapshot_clips(dataset)
    job_fields = {"dataset": dataset, "snapshot": entries, "snapshot_hash": snapshot_hash(entries),
                  "snapshot_size": len(entries), "config": {"seed": 11, "epochs": 6}, "overrides": {"epochs": 6}}
    first, second = register(**job_fields), register(**job_fields)
    Alias.point(first.model, "production", first, by=admin_user, note="first release")
    Alias.point(first.model, "production", second, by=approver_user, note="better on the new speakers")
    Alias.objects.get(name="production").rollback(by=admin_user, note="false accepts in the field")
    return {"first": first, "second": second, "dataset": dataset}


def test_the_api_card_lists_provenance_configuration_metrics_code_and_approvals(carded, viewer_client):
    response = viewer_client.get("/api/models/keywords/versions/v1/card")
    assert response.status_code == 200
    card = response.json()
    assert card["ref"] == "keywords:v1" and card["aliases"] == ["production"]
    [dataset] = card["datasets"]
    assert dataset["name"] == "field-recordings" and dataset["role"] == "trained on"
    assert dataset["licence"] == "CC-BY-4.0" and dataset["source"] == "https://example.org/corpus"
    assert dataset["consent_note"] == "Every speaker signed release form v2."
    assert card["snapshot"]["hash"] == carded["first"].snapshot_hash and card["snapshot"]["clips"] == 4
    assert card["snapshot"]["clip_sources"] == [{"source": "", "clips": 2},
                                                {"source": "https://freesound.org/s/123", "clips": 2}]
    assert card["configuration"] == carded["first"].train_config and card["changed_settings"] == ["epochs"]
    assert card["metrics"]["evaluated_on"] == "test" and card["metrics"]["headline"]["name"] == "test accuracy"
    assert card["metrics"]["figures"]["accuracy"] == carded["first"].evaluation()["accuracy"]
    assert card["code_version"] == carded["first"].code_version and card["code_version"].startswith("1.0+")
    assert card["fine_tuned_from"] is None
    # Who approved it: promoted by the admin, moved away by the approver's promotion of v2, rolled back to by the admin.
    assert [(row["alias"], row["action"], row["by"], row["note"]) for row in card["approvals"]] == [
        ("production", "Promoted", "admin-persona", "first release"),
        ("production", "Rolled back", "admin-persona", "false accepts in the field"),
    ]
    second = viewer_client.get("/api/models/keywords/versions/2/card").json()
    assert [(row["by"], row["current"]) for row in second["approvals"]] == [("approver-persona", False)]


def test_the_markdown_card_is_a_download_with_every_section(carded, viewer_client):
    response = viewer_client.get("/models/keywords/v1/card.md")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="keywords-v1-model-card.md"'
    text = response.content.decode()
    assert text.startswith("# Model card: keywords v1\n")
    for expected in ("- **Licence**: CC-BY-4.0", "- **Source**: https://example.org/corpus",
                     "- **Consent**: Every speaker signed release form v2.",
                     f"- **Snapshot**: `{carded['first'].snapshot_hash}` (4 clips)",
                     "| https://freesound.org/s/123 | 2 |", "| epochs (changed) | `6` |", f"| seed | `{carded['first'].train_config['seed']}` |",
                     f"- **Code version**: `{carded['first'].code_version}`", "## Metrics (test split)",
                     "| production (current) | Rolled back from v2 | admin-persona |", "false accepts in the field",
                     "## Artifacts", "| model.pt2 |"):
        assert expected in text, expected
    api = viewer_client.get("/api/models/keywords/versions/1/card.md")
    assert api.status_code == 200 and api.content.decode() == text


def test_the_card_page_and_the_version_page_show_the_provenance(carded, viewer_client):
    page = viewer_client.get("/models/keywords/v1/card/")
    assert page.status_code == 200
    html = page.content.decode()
    for expected in ("Model card: keywords v1", "<strong>CC-BY-4.0</strong>", "Every speaker signed release form v2.",
                     'href="https://example.org/corpus"', "false accepts in the field", carded["first"].code_version,
                     'href="/models/keywords/v1/card.md"'):
        assert expected in html, expected
    version_page = viewer_client.get("/models/keywords/v1/").content.decode()
    assert "CC-BY-4.0" in version_page and 'href="/models/keywords/v1/card/"' in version_page
    assert "<code>production</code> rolled back by admin-persona" in version_page


def test_a_fine_tuned_version_lists_its_base_and_the_base_dataset(carded, register, admin_user, viewer_client):
    other = DatasetFactory(name="studio", licence="proprietary")
    base = carded["first"]
    tuned = register("keywords-tuned", dataset=other, config={"seed": 1, "init_from": base.pinned_ref})
    assert tuned.base_version_id == base.pk
    card = viewer_client.get("/api/models/keywords-tuned/versions/1/card").json()
    assert card["fine_tuned_from"]["ref"] == "keywords:v1"
    assert [(row["role"], row["name"], row["licence"]) for row in card["datasets"]] == [
        ("trained on", "studio", "proprietary"),
        ("keywords:v1 (fine-tuning base) trained on", "field-recordings", "CC-BY-4.0"),
    ]
    assert "- **Fine-tuned from**: keywords:v1" in viewer_client.get("/models/keywords-tuned/v1/card.md").content.decode()


def test_only_staff_with_a_role_read_model_cards(carded, roleless_client, outsider_client):
    for url in ("/models/keywords/v1/card/", "/models/keywords/v1/card.md", "/api/models/keywords/versions/1/card",
                "/api/models/keywords/versions/1/card.md"):
        assert roleless_client.get(url).status_code == 403, url
        assert outsider_client.get(url).status_code in (302, 401, 403), url


def test_dataset_provenance_is_set_through_the_api_and_the_settings_page(db, trainer_client, viewer_client):
    response = trainer_client.post("/api/datasets", json.dumps({
        "name": "calls", "licence": "CC0-1.0", "source": "call centre, 2026", "consent_note": "opt-in at call start"}),
        content_type="application/json")
    assert response.status_code == 201, response.content
    assert (response.json()["licence"], response.json()["consent_note"]) == ("CC0-1.0", "opt-in at call start")
    patched = trainer_client.patch("/api/datasets/calls", json.dumps({"licence": "CC-BY-4.0"}),
                                   content_type="application/json")
    assert patched.status_code == 200 and patched.json()["licence"] == "CC-BY-4.0"
    assert viewer_client.patch("/api/datasets/calls", json.dumps({"licence": "x"}),
                               content_type="application/json").status_code == 403
    settings_page = trainer_client.get("/datasets/calls/settings/").content.decode()
    assert 'name="licence"' in settings_page and 'name="consent_note"' in settings_page
    response = trainer_client.post("/datasets/calls/settings/", {
        "name": "calls", "description": "", "sample_rate": 16000, "licence": "proprietary",
        "source": "https://example.org/calls", "consent_note": "recorded with consent"})
    assert response.status_code == 302
    from datasets_app.models import Dataset

    dataset = Dataset.objects.get(name="calls")
    assert (dataset.licence, dataset.source, dataset.consent_note) == (
        "proprietary", "https://example.org/calls", "recorded with consent")


def test_a_clip_source_is_edited_through_the_api_and_refuses_control_characters(db, trainer_client):
    clip = ClipFactory(dataset=DatasetFactory(name="calls"))
    url = f"/api/datasets/calls/clips/{clip.pk}"
    response = trainer_client.patch(url, json.dumps({"source": "logged prediction #42"}), content_type="application/json")
    assert response.status_code == 200 and response.json()["source"] == "logged prediction #42"
    bad = trainer_client.patch(url, json.dumps({"source": "a\nb"}), content_type="application/json")
    assert bad.status_code == 422
    assert Clip.objects.get(pk=clip.pk).source == "logged prediction #42"
