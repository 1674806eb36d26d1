"""Long background recordings: converted in blocks, limited by BACKGROUND_MAX_SECONDS, stored once like clips."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from datasets_app.background import convert_in_blocks, ingest_background
from audioml.audio.decoding import ffmpeg_binary
from datasets_app.importing import import_path
from datasets_app.ingest import IngestItem, ingest_files
from datasets_app.models import Clip, Dataset
from tests.audio import tone, wav_bytes
from tests.factories import ClipFactory, DatasetFactory
from training_app.models import snapshot_clips

pytestmark = pytest.mark.django_db


def long_recording(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> Path:
    """Minutes of a tone that changes pitch every few seconds, written block by block (PCM_16 WAV)."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as out:
        for start in range(0, int(seconds), 5):
            block = tone(float(rng.uniform(200, 2000)), min(5.0, seconds - start), sample_rate, amplitude=0.3,
                         channels=channels, seed=start)
            out.write(block)
    return path


def to_mp3(path: Path) -> Path:
    target = path.with_suffix(".mp3")
    subprocess.run([ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y", "-i", str(path), "-c:a", "libmp3lame",
                    "-b:a", "64k", str(target)], check=True)
    return target


def stored_files(media_root: Path) -> list[Path]:
    return [path for path in media_root.rglob("*") if path.is_file()]


def test_a_recording_longer_than_any_clip_is_stored_as_a_background(tmp_path, admin_user):
    dataset = DatasetFactory(sample_rate=16000)
    source = to_mp3(long_recording(tmp_path / "kitchen.wav", 95, sample_rate=44100, channels=2))

    result = ingest_background(dataset, IngestItem(name="kitchen.mp3", path=source, notes="Saturday"), admin_user)

    assert result.accepted, result.reason
    clip = Clip.objects.get(pk=result.clip_id)
    assert clip.kind == Clip.Kind.BACKGROUND and clip.is_background
    assert clip.duration == pytest.approx(95, abs=0.1)
    assert (clip.original_format, clip.source_sample_rate, clip.source_channels) == ("mp3", 44100, 2)
    assert (clip.notes, clip.uploaded_by) == ("Saturday", admin_user)
    with default_storage.open(clip.audio.name) as handle:
        info = sf.info(handle)
        handle.seek(0)
        pcm, _ = sf.read(handle, dtype="int16")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert clip.content_hash == hashlib.sha256(pcm.tobytes()).hexdigest()
    assert clip.peak_dbfs == pytest.approx(20 * np.log10(np.abs(pcm.astype(np.int32)).max() / 32767), abs=0.01)
    assert -20 < clip.rms_dbfs < -10

    as_clip = ingest_files(dataset, [IngestItem(name="kitchen.mp3", path=source)])
    assert as_clip.rejected[0].code == "too-long"  # ordinary clips keep CLIP_MAX_SECONDS


def test_canonical_audio_passes_through_unchanged_and_is_found_again_as_a_duplicate(tmp_path):
    dataset = DatasetFactory(sample_rate=16000)
    source = long_recording(tmp_path / "room.wav", 70)
    original, _ = sf.read(source, dtype="int16")

    first = ingest_background(dataset, IngestItem(name="room.wav", path=source))
    again = ingest_background(dataset, IngestItem(name="copy.wav", data=source.read_bytes()))

    stored = Clip.objects.get(pk=first.clip_id)
    with default_storage.open(stored.audio.name) as handle:
        canonical, _ = sf.read(handle, dtype="int16")
    np.testing.assert_array_equal(canonical, original)
    assert (again.accepted, again.code, again.duplicate_of) == (False, "duplicate", first.clip_id)
    assert Clip.objects.count() == 1


def test_conversion_holds_only_a_block_in_memory(tmp_path):
    source = long_recording(tmp_path / "ten-minutes.wav", 600)  # 19 MB of 16-bit samples

    tracemalloc.start()
    try:
        converted = convert_in_blocks(source, 16000, tmp_path / "out.wav", max_seconds=3600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert converted.duration == 600
    assert peak < 4 * 1024 * 1024


def test_a_background_over_its_limit_or_undecodable_is_rejected_with_nothing_stored(tmp_path, settings):
    settings.BACKGROUND_MAX_SECONDS = 30
    dataset = DatasetFactory(sample_rate=16000)
    wav = long_recording(tmp_path / "long.wav", 40)
    mp3 = to_mp3(wav)

    results = [
        ingest_background(dataset, IngestItem(name="long.wav", path=wav)),
        ingest_background(dataset, IngestItem(name="long.mp3", path=mp3)),
        ingest_background(dataset, IngestItem(name="notes.wav", data=b"RIFF this is not audio at all")),
        ingest_background(dataset, IngestItem(name="quiet.wav", path=_silence(tmp_path / "quiet.wav"))),
        ingest_background(dataset, IngestItem(name="bad-score.wav", path=wav, score="7")),
    ]

    assert [(r.accepted, r.code) for r in results] == [
        (False, "too-long"), (False, "too-long"), (False, "undecodable"), (False, "silent"), (False, "invalid-score"),
    ]
    assert "BACKGROUND_MAX_SECONDS=30" in results[0].reason
    assert not Clip.objects.exists()
    assert stored_files(settings.MEDIA_ROOT) == []


def _silence(path: Path) -> Path:
    sf.write(path, np.zeros(16000 * 3, dtype=np.int16), 16000, subtype="PCM_16")
    return path


# --------------------------------------------------------------------------------- API, panel, export, import


def wav_file(tmp_path: Path, name: str, seconds: float, seed: int = 0) -> Path:
    return long_recording(tmp_path / name, seconds, seed=seed)


def upload_of(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes(), content_type="audio/wav")


def test_api_upload_with_background_true_accepts_a_recording_longer_than_clips_may_be(admin_client, tmp_path):
    dataset = DatasetFactory(name="room")
    ClipFactory(dataset=dataset, label="yes")
    response = admin_client.post("/api/datasets/room/clips", {
        "files": [upload_of(wav_file(tmp_path, "evening.wav", 75))], "background": "true", "speaker": "kitchen",
    })

    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["accepted"], report["files"][0]["duration"]) == (1, 75.0)
    listed = admin_client.get("/api/datasets/room/clips?kind=background").json()["items"]
    assert [(c["id"], c["kind"], c["speaker"]) for c in listed] == [(report["files"][0]["clip_id"], "background", "kitchen")]
    assert {c["kind"] for c in admin_client.get("/api/datasets/room/clips").json()["items"]} == {"clip", "background"}
    stats = admin_client.get("/api/datasets/room/stats").json()
    assert (stats["clip_count"], stats["background_count"], stats["background_seconds"]) == (1, 1, 75.0)
    assert stats["unlabelled"] == 0
    room = admin_client.get("/api/datasets/room").json()
    assert [entry["label"] for entry in room["labels"]] == ["yes"]
    assert (room["clip_count"], room["background_count"], room["background_seconds"]) == (2, 1, 75.0)


def test_api_upload_without_the_flag_keeps_the_clip_limit(admin_client, tmp_path):
    DatasetFactory(name="room")
    response = admin_client.post("/api/datasets/room/clips", {"files": [upload_of(wav_file(tmp_path, "long.wav", 75))]})

    assert response.status_code == 422
    assert response.json()["field"] == "files" and "too long" in response.json()["detail"]
    assert not Clip.objects.exists()


def test_panel_upload_of_a_background_recording_shows_it_marked_in_the_clip_table(admin_client, tmp_path):
    DatasetFactory(name="room")
    page = admin_client.get("/datasets/room/").content.decode()
    assert 'name="background"' in page and "up to 4 h each" in page

    response = admin_client.post("/datasets/room/upload/", {
        "files": [upload_of(wav_file(tmp_path, "hall.wav", 65))], "background": "on",
    })

    assert response.status_code == 200
    clip = Clip.objects.get()
    assert clip.kind == "background" and clip.duration == 65.0
    table = admin_client.get("/datasets/room/?kind=background", headers={"HX-Request": "true",
                                                                         "HX-Target": "clip-table"}).content.decode()
    assert f'id="clip-{clip.pk}"' in table and ">background</span>" in table
    assert f'id="clip-{clip.pk}"' not in admin_client.get("/datasets/room/?kind=clip").content.decode()
    assert "+ 1\u00a0background recording, 1\u00a0min 5\u00a0s</a>" in admin_client.get("/datasets/room/").content.decode()


def test_classification_snapshots_leave_background_recordings_out(tmp_path):
    dataset = DatasetFactory(sample_rate=16000)
    clip = ClipFactory(dataset=dataset, label="yes")
    result = ingest_background(dataset, IngestItem(name="room.wav", path=wav_file(tmp_path, "room.wav", 20), label="yes"))

    assert [entry["id"] for entry in snapshot_clips(dataset)] == [clip.pk]
    assert Clip.objects.get(pk=result.clip_id).label == "yes"
    assert dataset.label_counts() == {"yes": 1}


def test_an_export_keeps_background_recordings_apart_and_imports_back_as_backgrounds(admin_client, tmp_path):
    source = DatasetFactory(name="room", sample_rate=16000)
    ClipFactory(dataset=source, label="yes")
    background = ingest_background(source, IngestItem(name="room.wav", path=wav_file(tmp_path, "room.wav", 70)))

    response = admin_client.get("/api/datasets/room/export?layout=labels")
    archive = tmp_path / "room.zip"
    archive.write_bytes(b"".join(response.streaming_content))
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert f"_background/{background.clip_id}-room.wav" in names
    assert {(row["file"].split("/")[0], row["kind"]) for row in manifest} == {("yes", "clip"), ("_background", "background")}

    copy = DatasetFactory(name="copy", sample_rate=16000)
    report = import_path(copy, archive)
    assert len(report.accepted) == 2
    assert copy.clips.get(kind="background").duration == 70.0
    ljspeech = admin_client.get("/api/datasets/room/export?layout=ljspeech")
    assert ljspeech["X-Left-Out-Clips"] == "2"  # no transcripts; the background is never a TTS utterance


def test_import_dataset_background_flag_and_a_manifest_kind_column(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    wav_file(folder, "monday.wav", 70, seed=1)
    wav_file(folder, "tuesday.wav", 61, seed=2)
    out = io.StringIO()
    call_command("import_dataset", "rooms", str(folder), "--create", "--background", stdout=out)

    dataset = Dataset.objects.get(name="rooms")
    assert sorted(dataset.clips.backgrounds().values_list("duration", flat=True)) == [61.0, 70.0]
    assert "2 clip(s) added" in out.getvalue()

    listed = tmp_path / "listed"
    listed.mkdir()
    wav_file(listed, "room.wav", 70, seed=3)
    (listed / "yes.wav").write_bytes(wav_bytes(tone(440, 0.5)))
    (listed / "odd.wav").write_bytes(wav_bytes(tone(660, 0.5)))
    (listed / "manifest.csv").write_text("file,label,kind\nroom.wav,,background\nyes.wav,yes,\nodd.wav,no,sometimes\n")
    report = import_path(dataset, listed)
    assert sorted((r.name, r.accepted, r.code) for r in report.files) == [
        ("odd.wav", False, "invalid-kind"), ("room.wav", True, ""), ("yes.wav", True, ""),
    ]
    assert dataset.clips.get(label="yes").kind == "clip"


def test_the_stats_and_clip_pages_say_which_audio_is_background(admin_client, tmp_path):
    dataset = DatasetFactory(name="room", sample_rate=16000)
    ClipFactory(dataset=dataset, label="yes")
    result = ingest_background(dataset, IngestItem(name="room.wav", path=wav_file(tmp_path, "room.wav", 90)))

    stats_page = admin_client.get("/datasets/room/stats/").content.decode()
    clip_page = admin_client.get(f"/datasets/room/clips/{result.clip_id}/").content.decode()

    assert "+ 1\u00a0background recording, 1\u00a0min 30\u00a0s" in stats_page
    assert "background recording</span>" in clip_page


def test_every_page_that_sums_a_dataset_up_counts_the_clips_and_names_the_background_recordings_apart(admin_client):
    """The dataset page, the datasets list, Statistics and the new-job form agree: 2 clips, 1 min 30 s of clips,
    and '+ 1 background recording, 1 min' beside them (the dataset page once said 3 clips, 2 min 30 s)."""
    NB = "\u00a0"
    dataset = DatasetFactory(name="room", sample_rate=16000)
    ClipFactory(dataset=dataset, label="yes", seconds=0.1, duration=45.0)
    ClipFactory(dataset=dataset, label="no", seconds=0.1, duration=45.0)
    ClipFactory(dataset=dataset, label="", kind=Clip.Kind.BACKGROUND, seconds=0.1, duration=60.0)
    ClipFactory(dataset=dataset, label="yes", seconds=0.1, duration=30.0, status=Clip.Status.TRASHED)

    assert dataset.summary() == {"clip_count": 2, "trashed_count": 1, "total_seconds": 90.0,
                                 "background_count": 1, "background_seconds": 60.0}
    note = f"+ 1{NB}background recording, 1{NB}min"
    pages = {
        "dataset": admin_client.get("/datasets/room/").content.decode(),
        "list": admin_client.get("/datasets/").content.decode(),
        "stats": admin_client.get("/datasets/room/stats/").content.decode(),
        "new job": admin_client.get("/training/new/summary/", {"dataset": "room", "preset": "quick", "task": "detection"},
                                    headers={"HX-Request": "true"}).content.decode(),
    }
    for name, html in pages.items():
        assert f"1{NB}min 30{NB}s" in html, name
        assert note in html, name
        assert f"2{NB}min 30{NB}s" not in html, name
    assert '<div class="value">2</div><div class="label">clips</div>' in pages["dataset"]
    assert '<td class="num" data-label="Clips">2</td>' in pages["list"]
    assert '<div class="value">2</div><div class="label">clips</div>' in pages["stats"]
    settings_page = admin_client.get("/datasets/room/settings/").content.decode()
    assert "its 3 clips, 1 background recording and their audio files" in settings_page
