"""The augmentation preview of the new-job form: a clip of the dataset as training hears it, a few variants, from
the API and the panel (run in a child process, real torch, real audio), with role checks."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import soundfile

from tests.training.conftest import add_clips

PREVIEW = "/api/jobs/augmentation-preview"


def post(client, body: dict):
    return client.post(PREVIEW, json.dumps(body), content_type="application/json")


def wav(data: str) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(data)), dtype="float32")
    return samples, rate


def test_the_api_renders_variants_of_a_clip_with_the_jobs_augmentation(tones, trainer_client):
    add_clips(tones, "noise", 5, 4000.0)
    response = post(trainer_client, {"dataset": "tones", "preset": "quick", "variants": 3,
                                     "overrides": {"clip_seconds": 0.5, "seed": 3, "warp": True}})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sample_rate"] == 16000 and body["seed"] == 3 and body["clips"] == 12
    assert body["clip"]["label"] in ("high", "low") and body["clip"]["audio_url"].endswith("/audio/")
    assert [step.split(" ")[0] for step in body["augmentations"]] == ["time", "shifted", "noise", "SpecAugment:"]
    assert body["noise_source"] == "5 clips of the noise label"
    assert len(body["variants"]) == 3
    reference, rate = wav(body["reference"]["wav"])
    assert rate == 16000 and len(reference) == 8000  # clip_seconds of audio, what the network sees
    variants = [wav(variant["wav"])[0] for variant in body["variants"]]
    assert all(len(variant) == 8000 and np.abs(variant).max() > 0.5 for variant in variants)
    # Each draw differs from the unaugmented clip and from the others.
    assert all(not np.allclose(variant, reference, atol=1e-3) for variant in variants)
    assert not np.allclose(variants[0], variants[1], atol=1e-3)
    assert all(base64.b64decode(v["png"]).startswith(b"\x89PNG\r\n\x1a\n") for v in body["variants"])
    # The same request gives the same draws: the preview follows the seed, as training does.
    again = post(trainer_client, {"dataset": "tones", "preset": "quick", "variants": 3,
                                  "overrides": {"clip_seconds": 0.5, "seed": 3, "warp": True}}).json()
    assert again["variants"][0]["png"] == body["variants"][0]["png"]


def test_with_every_augmentation_off_the_variants_are_the_clip_itself(tones, trainer_client):
    overrides = {"clip_seconds": 0.5, "time_shift": False, "noise": False, "spec_augment": False, "warp": False}
    body = post(trainer_client, {"dataset": "tones", "preset": "quick", "overrides": overrides, "variants": 2}).json()
    assert body["augmentations"] == [] and body["noise_source"] == ""
    assert all(variant["png"] == body["reference"]["png"] for variant in body["variants"])


def test_another_clip_and_the_refusals(tones, trainer_client):
    first = post(trainer_client, {"dataset": "tones", "preset": "quick", "variants": 1}).json()
    chosen = post(trainer_client, {"dataset": "tones", "preset": "quick", "variants": 1,
                                   "clip_id": first["next_clip_id"]}).json()
    assert chosen["clip"]["id"] == first["next_clip_id"] != first["clip"]["id"]
    assert post(trainer_client, {"dataset": "tones", "clip_id": 999999}).status_code == 404
    assert post(trainer_client, {"dataset": "nope"}).status_code == 404
    bad = post(trainer_client, {"dataset": "tones", "overrides": {"clip_seconds": 99}})
    assert bad.status_code == 422 and bad.json()["field"] == "clip_seconds"
    voice = post(trainer_client, {"dataset": "tones", "task": "synthesis"})
    assert voice.status_code == 422 and "no augmentation to preview" in voice.json()["detail"]


def test_the_form_plays_the_preview_with_htmx_and_without(tones, trainer_client):
    page = trainer_client.get("/training/new/?dataset=tones").content.decode()
    assert "Listen to what training hears" in page and 'hx-post="/training/new/preview/"' in page
    form = {"dataset": "tones", "model_name": "tones", "task": "classification", "preset": "quick",
            "clip_seconds": "0.5", "time_shift": "on", "noise": "on", "spec_augment": "on"}
    fragment = trainer_client.post("/training/new/preview/", form, headers={"HX-Request": "true"}).content.decode()
    assert 'id="augment-preview"' in fragment
    assert fragment.count('src="data:audio/wav;base64,') == 5  # the round trip and 4 variants
    assert "Variant 4" in fragment and "gaussian noise (the dataset has no noise label)" in fragment
    assert "<html" not in fragment
    full = trainer_client.post("/training/new/preview/", form).content.decode()
    assert "<html" in full and "Variant 4" in full and 'name="model_name"' in full
    empty = trainer_client.post("/training/new/preview/", {"task": "classification"}, headers={"HX-Request": "true"})
    assert "Choose a dataset first." in empty.content.decode()


def test_only_trainers_preview(tones, viewer_client, approver_client):
    for client in (viewer_client, approver_client):
        assert post(client, {"dataset": "tones"}).status_code == 403
        assert client.post("/training/new/preview/", {"dataset": "tones"}).status_code == 403
