"""Personas and a small world (a trainable dataset, jobs, a registered model with aliases) for the role tests.

The world is built lazily: an action asks for what it needs (`world.clip`, `world.model`...) and only that is
made, so a 6 x 40 matrix stays quick."""

from __future__ import annotations

from functools import cached_property

import pytest
from django.test import Client

from registry_app.models import Alias
from tests.factories import ClipFactory, DatasetFactory, TrainingJobFactory

# Persona name -> the fixture giving its user. "superuser" is the admin persona of tests/conftest.py.
PERSONAS = {
    "superuser": "admin_user",
    "viewer": "viewer_user",
    "trainer": "trainer_user",
    "approver": "approver_user",
    "roleless": "roleless_staff",
}


class World:
    def __init__(self, register) -> None:  # noqa: F811 - the fixture function is passed in
        self._register = register

    @cached_property
    def dataset(self):
        """`kws` with two short clips."""
        dataset = DatasetFactory(name="kws")
        for index in range(2):
            ClipFactory(dataset=dataset, label="yes", frequency=300.0 + 23 * index, seconds=0.25)
        return dataset

    @cached_property
    def trainable(self):
        """`kws` with five `yes` and five `no` clips: enough to start a job on."""
        for index in range(2, 5):
            ClipFactory(dataset=self.dataset, label="yes", frequency=300.0 + 23 * index, seconds=0.25)
        for index in range(5):
            ClipFactory(dataset=self.dataset, label="no", frequency=1500.0 + 23 * index, seconds=0.25)
        return self.dataset

    @cached_property
    def clip(self):
        return self.dataset.clips.order_by("pk").first()

    @cached_property
    def trashed_clip(self):
        clip = self.dataset.clips.order_by("-pk").first()
        clip.trash()
        return clip

    @cached_property
    def queued_job(self):
        return TrainingJobFactory(dataset=self.dataset, model_name="kws", status="queued", phase="queued", progress=0.0)

    @cached_property
    def finished_job(self):
        return TrainingJobFactory(dataset=self.trainable, model_name="kws", status="failed", phase="done", overrides={})

    @cached_property
    def versions(self):
        """keywords v1, v2, v3; `production` moved v1 -> v2 (so it can roll back), v3 free of aliases."""
        versions = [self._register("keywords") for _ in range(3)]
        model = versions[0].model
        Alias.point(model, "production", versions[0], note="first")
        Alias.point(model, "production", versions[1], note="second")
        return versions

    @cached_property
    def model(self):
        return self.versions[0].model

    @cached_property
    def prediction(self):
        """A logged answer of keywords v2 (production) with its audio kept, flagged and queued for `kws`."""
        from registry_app import inference
        from registry_app.models import PredictionLog
        from tests.registry.conftest import wav_upload

        self.model.set_log_settings({"log_audio": True})
        request = inference.prepare(self.model)
        result, decoded = inference.predict_decoded(request, *inference.decode_source(request, wav_upload(), "a.wav"))
        inference.log_and_shadow(request, result, decoded)
        row = PredictionLog.objects.get(pk=result["prediction_id"])
        return row.flag(label="no", dataset=self.dataset)


@pytest.fixture
def world(register):  # noqa: F811
    return World(register)


@pytest.fixture
def persona_user(request, db):
    """persona_user(name) -> that persona's user."""
    return lambda name: request.getfixturevalue(PERSONAS[name])


@pytest.fixture
def panel_as(persona_user):
    """panel_as(name) -> a Client logged in to the panel as that persona."""

    def make(name: str) -> Client:
        client = Client()
        client.force_login(persona_user(name))
        return client

    return make


@pytest.fixture
def api_as(persona_user, token_client):
    """api_as(name) -> a Client using a bearer token of that persona (CSRF checks on, like the real server)."""
    return lambda name: token_client(persona_user(name))
