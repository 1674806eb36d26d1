"""ingest_files: canonical storage, one reason per rejected file, duplicates, and no orphans on failure."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from datasets_app.ingest import IngestItem, ingest_files
from datasets_app.models import Clip, clip_storage_name
from tests.audio import canonical_wav, distinct_wav, encode, tone, wav_bytes
from tests.factories import ClipFactory, DatasetFactory

pytestmark = pytest.mark.django_db


def stored_files(media_root: Path) -> set[str]:
    clips = media_root / "clips"
    return {path.relative_to(media_root).as_posix() for path in clips.rglob("*") if path.is_file()} if clips.exists() else set()


def incoming_leftovers(media_root: Path) -> list[Path]:
    incoming = media_root / ".incoming"
    return list(incoming.iterdir()) if incoming.exists() else []


def test_accepted_file_becomes_a_canonical_clip(admin_user, isolated_storage):
    dataset = DatasetFactory(sample_rate=16000)
    samples = tone(440.0, 1.0, 44100, channels=2, seed=1)
    report = ingest_files(
        dataset,
        [IngestItem(name="Hello World.wav", data=wav_bytes(samples, 44100), label=" yes ", transcript="hello",
                    score="0.75", speaker="alice", notes="first take")],
        user=admin_user,
    )
    assert [result.status for result in report.files] == ["accepted"]
    clip = Clip.objects.get(pk=report.files[0].clip_id)
    assert (clip.label, clip.transcript, clip.score, clip.speaker, clip.notes) == ("yes", "hello", 0.75, "alice", "first take")
    assert (clip.source_sample_rate, clip.source_channels, clip.original_format) == (44100, 2, "wav")
    assert clip.original_name == "Hello World.wav"
    assert clip.uploaded_by == admin_user
    assert clip.duration == pytest.approx(1.0)
    assert clip.audio.name == clip_storage_name(dataset.pk, clip.content_hash)
    with default_storage.open(clip.audio.name) as handle:
        data = handle.read()
    stored, rate = sf.read(io.BytesIO(data), dtype="int16")
    info = sf.info(io.BytesIO(data))
    assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert hashlib.sha256(stored.astype("<i2").tobytes()).hexdigest() == clip.content_hash
    assert -7.0 < clip.peak_dbfs < -5.0 and -10.5 < clip.rms_dbfs < -8.0
    assert stored_files(isolated_storage) == {clip.audio.name}
    assert incoming_leftovers(isolated_storage) == []


def test_hash_is_the_one_the_factories_compute():
    dataset = DatasetFactory()
    samples = tone(333.0, 0.5, 16000, seed=4)
    report = ingest_files(dataset, [IngestItem(name="a.wav", data=wav_bytes(samples, 16000, subtype="FLOAT"))])
    _, digest = canonical_wav(samples, 16000)
    assert Clip.objects.get(pk=report.clip_ids[0]).content_hash == digest


def test_every_format_lands_as_a_clip(tmp_path):
    dataset = DatasetFactory()
    flac = tmp_path / "x.flac"
    sf.write(flac, tone(500.0, 1.0, 48000), 48000)
    ogg = tmp_path / "x.ogg"
    sf.write(ogg, tone(600.0, 1.0, 22050), 22050)
    items = [
        IngestItem(name="x.flac", path=flac),
        IngestItem(name="x.ogg", path=ogg),
        IngestItem(name="x.mp3", path=encode(tmp_path, ".mp3", tone(700.0, 1.0, 44100, channels=2))),
        IngestItem(name="x.m4a", path=encode(tmp_path, ".m4a", tone(800.0, 1.0, 44100, channels=2))),
        IngestItem(name="recording.webm", path=encode(tmp_path, ".webm", tone(900.0, 1.0, 48000), sample_rate=48000)),
    ]
    report = ingest_files(dataset, items, workers=2)
    assert [result.status for result in report.files] == ["accepted"] * 5, report.as_dict()
    formats = sorted(Clip.objects.values_list("original_format", flat=True))
    assert formats == ["flac", "m4a/aac", "mp3", "ogg/vorbis", "webm/opus"]
    assert set(Clip.objects.values_list("source_sample_rate", flat=True)) == {48000, 22050, 44100}


def test_uploaded_file_objects_are_accepted():
    dataset = DatasetFactory()
    upload = SimpleUploadedFile("phone.wav", distinct_wav(1), content_type="audio/wav")
    report = ingest_files(dataset, [IngestItem(name=upload.name, file=upload, label="yes")])
    assert report.files[0].accepted


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "empty", "empty"),
        (b"definitely not audio" * 40, "undecodable", "not a decodable audio file"),
        (wav_bytes(tone(440.0, 0.05, 16000), 16000), "too-short", "too short: 0.05 s"),
        (wav_bytes(np.zeros(8000, dtype=np.float32), 16000), "silent", "digitally silent"),
    ],
    ids=["empty", "corrupt", "too-short", "silent"],
)
def test_bad_files_are_rejected_with_a_reason(isolated_storage, data, code, words):
    dataset = DatasetFactory()
    report = ingest_files(dataset, [IngestItem(name="bad.wav", data=data), IngestItem(name="good.wav", data=distinct_wav(1))])
    bad, good = report.files
    assert (bad.accepted, bad.code) == (False, code)
    assert words in bad.reason
    assert good.accepted
    assert Clip.objects.count() == 1
    assert len(stored_files(isolated_storage)) == 1


def test_too_long_is_rejected(settings):
    settings.CLIP_MAX_SECONDS = 1.0
    dataset = DatasetFactory()
    report = ingest_files(dataset, [IngestItem(name="long.wav", data=wav_bytes(tone(440.0, 1.5, 16000), 16000))])
    assert report.files[0].code == "too-long"
    assert "1.5 s" in report.files[0].reason and "1 s" in report.files[0].reason
    assert not Clip.objects.exists()


def test_quiet_background_noise_is_valid_data():
    dataset = DatasetFactory()
    quiet = np.random.default_rng(0).normal(0, 0.001, 16000).astype(np.float32)
    report = ingest_files(dataset, [IngestItem(name="room-tone.wav", data=wav_bytes(quiet, 16000), label="noise")])
    assert report.files[0].accepted
    clip = Clip.objects.get()
    assert clip.rms_dbfs < -50 and clip.is_near_silent


@pytest.mark.parametrize(
    ("metadata", "code", "words"),
    [
        ({"score": "1.5"}, "invalid-score", "between 0 and 1"),
        ({"score": "-0.1"}, "invalid-score", "between 0 and 1"),
        ({"score": "high"}, "invalid-score", "'high'"),
        ({"label": "../etc"}, "invalid-label", "cannot contain '/'"),
        ({"label": ".."}, "invalid-label", "cannot be '.' or '..'"),
        ({"label": "x" * 101}, "invalid-label", "at most 100 characters"),
        ({"speaker": "bob\nalice"}, "invalid-speaker", "single line"),
    ],
)
def test_invalid_metadata_is_rejected(metadata, code, words):
    dataset = DatasetFactory()
    report = ingest_files(dataset, [IngestItem(name="a.wav", data=distinct_wav(1), **metadata)])
    result = report.files[0]
    assert (result.accepted, result.code) == (False, code)
    assert words in result.reason
    assert not Clip.objects.exists()


def test_duplicate_of_a_clip_in_the_dataset_names_that_clip():
    dataset = DatasetFactory()
    samples = tone(440.0, 0.5, 16000, seed=7)
    existing = ClipFactory(dataset=dataset, samples=samples)
    # The clip's own canonical file, uploaded again (16-bit PCM at the dataset's rate is stored bit for bit).
    again = existing.audio.read()
    report = ingest_files(dataset, [IngestItem(name="again.wav", data=again)])
    result = report.files[0]
    assert (result.accepted, result.code, result.duplicate_of) == (False, "duplicate", existing.pk)
    assert f"#{existing.pk}" in result.reason
    other = DatasetFactory()
    assert ingest_files(other, [IngestItem(name="again.wav", data=again)]).files[0].accepted
    # The same signal as a float WAV is the same canonical audio too.
    float_wav = wav_bytes(samples, 16000, subtype="FLOAT")
    assert ingest_files(dataset, [IngestItem(name="float.wav", data=float_wav)]).files[0].duplicate_of == existing.pk


def test_duplicate_of_a_trashed_clip_says_it_is_in_the_trash():
    dataset = DatasetFactory()
    samples = tone(440.0, 0.5, 16000, seed=8)
    existing = ClipFactory(dataset=dataset, samples=samples)
    existing.trash()
    result = ingest_files(dataset, [IngestItem(name="again.wav", data=canonical_wav(samples, 16000)[0])]).files[0]
    assert result.duplicate_of == existing.pk
    assert "in the trash" in result.reason


def test_duplicates_within_one_batch_keep_the_first(isolated_storage):
    dataset = DatasetFactory()
    same = distinct_wav(3)
    # The same audio as FLAC is still the same clip: duplicates are found on the canonical samples.
    flac = io.BytesIO()
    data, _ = sf.read(io.BytesIO(same), dtype="int16")
    sf.write(flac, data, 16000, format="FLAC")
    report = ingest_files(
        dataset,
        [IngestItem(name="one.wav", data=same), IngestItem(name="two.wav", data=same), IngestItem(name="three.flac", data=flac.getvalue())],
        workers=2,
    )
    assert [result.status for result in report.files] == ["accepted", "rejected", "rejected"]
    assert all("duplicate of 'one.wav' in this upload" in result.reason for result in report.rejected)
    assert Clip.objects.count() == 1
    assert len(stored_files(isolated_storage)) == 1


def test_uploaded_names_are_never_used_as_paths(isolated_storage, tmp_path):
    dataset = DatasetFactory()
    names = ["../../../escape.wav", "/etc/passwd.wav", "..\\..\\win.wav", "con:.wav"]
    report = ingest_files(dataset, [IngestItem(name=name, data=distinct_wav(n)) for n, name in enumerate(names)])
    assert len(report.accepted) == 4
    for clip in Clip.objects.all():
        assert clip.audio.name == clip_storage_name(dataset.pk, clip.content_hash)
        assert clip.original_name in names
    assert not (tmp_path / "escape.wav").exists()
    assert all(path.startswith(f"clips/{dataset.pk}/") for path in stored_files(isolated_storage))


def test_results_keep_input_order_with_parallel_workers(settings):
    dataset = DatasetFactory()
    items = [IngestItem(name=f"{n:03d}.wav", data=distinct_wav(n, seconds=0.2)) for n in range(40)]
    items[5] = IngestItem(name="005.wav", data=b"junk" * 100)
    seen = []
    report = ingest_files(dataset, items, workers=2, progress=lambda done, total: seen.append((done, total)))
    assert [result.name for result in report.files] == [item.name for item in items]
    assert len(report.accepted) == 39 and report.files[5].code == "undecodable"
    assert seen[-1] == (40, 40) and len(seen) == 40
    ids = [result.clip_id for result in report.accepted]
    assert sorted(Clip.objects.values_list("original_name", flat=True)) == sorted(r.name for r in report.accepted)
    assert len(set(ids)) == 39


def test_storage_failure_for_one_file_leaves_no_orphans(monkeypatch, isolated_storage):
    dataset = DatasetFactory()
    items = [IngestItem(name=f"{n}.wav", data=distinct_wav(n)) for n in range(6)]
    failing_hash = hashlib.sha256(sf.read(io.BytesIO(items[3].data), dtype="int16")[0].tobytes()).hexdigest()
    original_save = FileSystemStorage._save

    def save_or_fail(storage, name, content):
        if failing_hash in name:
            raise OSError(28, "No space left on device")
        return original_save(storage, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", save_or_fail)
    report = ingest_files(dataset, items)
    assert [result.accepted for result in report.files] == [True, True, True, False, True, True]
    # A full disk is the server's problem and says so (issue 10 item 8), not the raw OSError text.
    assert report.files[3].code == "storage-full"
    assert "disk is full" in report.files[3].reason and "Errno" not in report.files[3].reason
    assert stored_files(isolated_storage) == set(Clip.objects.values_list("audio", flat=True))
    assert Clip.objects.count() == 5
    assert incoming_leftovers(isolated_storage) == []


@pytest.fixture
def failing_insert_trigger(db):
    """A real database failure for rows whose original_name is 'bad.wav'."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION audioml_test_fail() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'simulated disk failure'; END; $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER audioml_test_fail BEFORE INSERT ON datasets_app_clip FOR EACH ROW "
                "WHEN (NEW.original_name = 'bad.wav') EXECUTE FUNCTION audioml_test_fail()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER audioml_test_fail BEFORE INSERT ON datasets_app_clip "
                "WHEN NEW.original_name = 'bad.wav' BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
            )
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER audioml_test_fail ON datasets_app_clip")
            cursor.execute("DROP FUNCTION audioml_test_fail()")
        else:
            cursor.execute("DROP TRIGGER audioml_test_fail")


def test_database_failure_for_one_file_leaves_no_orphans(failing_insert_trigger, isolated_storage):
    dataset = DatasetFactory()
    names = ["a.wav", "b.wav", "bad.wav", "c.wav"]
    report = ingest_files(dataset, [IngestItem(name=name, data=distinct_wav(n)) for n, name in enumerate(names)])
    assert [result.accepted for result in report.files] == [True, True, False, True]
    assert report.files[2].code == "storage-error"
    assert "simulated disk failure" in report.files[2].reason
    assert sorted(Clip.objects.values_list("original_name", flat=True)) == ["a.wav", "b.wav", "c.wav"]
    assert stored_files(isolated_storage) == set(Clip.objects.values_list("audio", flat=True))
    assert incoming_leftovers(isolated_storage) == []


def test_interrupted_batch_removes_the_files_of_its_unsaved_chunk(monkeypatch, isolated_storage):
    dataset = DatasetFactory()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Clip.objects, "bulk_create", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest_files(dataset, [IngestItem(name=f"{n}.wav", data=distinct_wav(n)) for n in range(3)])
    assert not Clip.objects.exists()
    assert stored_files(isolated_storage) == set()


def test_deleting_clips_removes_their_files(isolated_storage, django_capture_on_commit_callbacks):
    dataset = DatasetFactory()
    report = ingest_files(dataset, [IngestItem(name=f"{n}.wav", data=distinct_wav(n)) for n in range(3)])
    assert len(stored_files(isolated_storage)) == 3
    with django_capture_on_commit_callbacks(execute=True):
        Clip.objects.filter(pk=report.clip_ids[0]).delete()
    assert len(stored_files(isolated_storage)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        dataset.delete()
    assert stored_files(isolated_storage) == set()
