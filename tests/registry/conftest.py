"""The registry tests register the session's one tiny real model (`trained_artifacts` and `register`, in
tests/conftest.py) as many versions as a test needs."""

from __future__ import annotations

import pytest

from tests.audio import tone


@pytest.fixture(autouse=True)
def empty_model_cache():
    """Each test starts with no loaded models, so load counts are its own."""
    from registry_app import inference

    inference.cache.clear()
    inference.cache.loads = inference.cache.hits = 0
    yield
    inference.cache.clear()


def wav_upload(name: str = "clip.wav", frequency: float = 2400.0, seconds: float = 0.5, **kwargs):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.audio import wav_bytes

    return SimpleUploadedFile(name, wav_bytes(tone(frequency, seconds, **kwargs)), content_type="audio/wav")
