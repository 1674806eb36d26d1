"""Long background recordings: converted in blocks, limited by BACKGROUND_MAX_SECONDS, stored once like clips."""

from __future__ import annotations

import hashlib
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.files.storage import default_storage

from datasets_app.background import convert_in_blocks, ingest_background
from datasets_app.ingest import IngestItem, ffmpeg_binary, ingest_files
from datasets_app.models import Clip
from tests.audio import tone
from tests.factories import DatasetFactory

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
