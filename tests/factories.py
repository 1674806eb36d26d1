"""factory-boy factories that make real rows and real audio files."""

from __future__ import annotations

import hashlib

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from datasets_app.models import Clip, Dataset, clip_storage_name
from tests.audio import canonical_wav, tone


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")
    is_staff = False

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffFactory(UserFactory):
    is_staff = True


class AdminFactory(UserFactory):
    is_staff = True
    is_superuser = True


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset-{n}")
    description = "Made in a test"
    sample_rate = 16000


class ClipFactory(factory.django.DjangoModelFactory):
    """A clip whose canonical WAV really exists in the media storage (a tone; frequency set per clip)."""

    class Meta:
        model = Clip
        exclude = ("frequency", "seconds")  # samples reaches _create, which writes the WAV

    dataset = factory.SubFactory(DatasetFactory)
    frequency = factory.Sequence(lambda n: 200.0 + 37.0 * n)
    seconds = 1.0
    samples = factory.LazyAttribute(lambda o: tone(o.frequency, o.seconds, o.dataset.sample_rate, seed=int(o.frequency)))
    original_name = factory.Sequence(lambda n: f"clip-{n}.wav")
    original_format = "wav"
    label = "yes"
    duration = factory.LazyAttribute(lambda o: o.seconds)
    source_sample_rate = factory.LazyAttribute(lambda o: o.dataset.sample_rate)
    source_channels = 1
    peak_dbfs = -6.0
    rms_dbfs = -9.0
    content_hash = ""

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        samples = kwargs.pop("samples")
        dataset = kwargs["dataset"]
        data, digest = canonical_wav(samples, dataset.sample_rate)
        kwargs["content_hash"] = kwargs.get("content_hash") or digest
        clip = model_class(*args, **kwargs)
        clip.audio.save(clip_storage_name(dataset.pk, kwargs["content_hash"]), ContentFile(data), save=False)
        clip.save()
        return clip


class TrainingJobFactory(factory.django.DjangoModelFactory):
    """A training job row (no queue, no worker): set status and fields as the test needs."""

    class Meta:
        model = "training_app.TrainingJob"

    dataset = factory.SubFactory(DatasetFactory)
    model_name = "keywords"
    task = "classification"
    preset = "quick"
    config = factory.LazyFunction(lambda: {"preset": "quick", "epochs": 1})
    status = "succeeded"
    phase = "done"
    progress = 100.0
    snapshot = factory.LazyFunction(
        lambda: [{"id": i, "content_hash": f"{i:064x}", "label": "yes", "speaker": "", "audio": "", "duration": 1.0}
                 for i in range(1, 11)]
    )
    snapshot_hash = factory.Sequence(lambda n: hashlib.sha256(f"snapshot-{n}".encode()).hexdigest())
