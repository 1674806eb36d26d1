"""decode_audio: every common format becomes mono float32 at the requested rate; bad input gets a clear reason."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioml.audio.canonical import canonicalise
from audioml.audio.decoding import AudioDecodeError, decode_audio, ffmpeg_binary
from tests.audio import canonical_wav, dominant_frequency, encode, tone, wav_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_wav_subtypes_decode_to_the_same_samples(subtype):
    samples = tone(440.0, 0.5, 16000, seed=3)
    decoded = decode_audio(wav_bytes(samples, 16000, subtype=subtype), 16000)
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.shape == samples.shape
    assert np.max(np.abs(decoded.samples - samples)) < 1e-4
    assert decoded.format == "wav"
    assert (decoded.source_sample_rate, decoded.source_channels) == (16000, 1)


def test_stereo_wav_is_mixed_down_to_mono(tmp_path):
    left = tone(440.0, 0.5, 16000, noise=0)
    right = tone(880.0, 0.5, 16000, noise=0)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    decoded = decode_audio(path, 16000)
    assert decoded.samples.ndim == 1
    assert decoded.source_channels == 2
    assert np.allclose(decoded.samples, (left + right) / 2, atol=1e-6)


def test_44k_audio_is_resampled_to_16k_keeping_its_pitch(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, tone(1000.0, 1.0, 44100, noise=0), 44100)
    decoded = decode_audio(str(path), 16000)
    assert decoded.sample_rate == 16000
    assert decoded.source_sample_rate == 44100
    assert len(decoded.samples) == 16000
    assert decoded.duration == pytest.approx(1.0)
    assert dominant_frequency(decoded.samples, 16000) == pytest.approx(1000.0, abs=2.0)


@pytest.mark.parametrize(("suffix", "fmt"), [(".flac", "flac"), (".ogg", "ogg/vorbis")])
def test_flac_and_ogg_decode_with_soundfile(tmp_path, suffix, fmt):
    path = tmp_path / f"clip{suffix}"
    sf.write(path, tone(440.0, 1.0, 22050, noise=0), 22050)
    decoded = decode_audio(path, 16000)
    assert decoded.format == fmt
    assert decoded.source_sample_rate == 22050
    assert len(decoded.samples) == 16000
    assert dominant_frequency(decoded.samples, 16000) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize(
    ("suffix", "fmt", "source_rate"),
    [(".mp3", "mp3", 44100), (".m4a", "m4a/aac", 44100), (".webm", "webm/opus", 48000)],
)
def test_compressed_formats_decode_with_ffmpeg(tmp_path, suffix, fmt, source_rate):
    path = encode(tmp_path, suffix)
    decoded = decode_audio(path, 16000)
    assert decoded.format == fmt
    assert decoded.source_channels == 2
    assert decoded.source_sample_rate == source_rate
    assert decoded.duration == pytest.approx(1.0, abs=0.06)
    assert dominant_frequency(decoded.samples, 16000) == pytest.approx(440.0, abs=3.0)


def test_bytes_and_file_objects_decode_like_paths(tmp_path):
    path = encode(tmp_path, ".m4a")
    from_path = decode_audio(path, 16000)
    from_bytes = decode_audio(path.read_bytes(), 16000, name_hint="phone.m4a")
    with open(path, "rb") as handle:
        from_file = decode_audio(handle, 16000, name_hint="phone.m4a")
    assert np.array_equal(from_path.samples, from_bytes.samples)
    assert np.array_equal(from_path.samples, from_file.samples)
    assert from_bytes.format == "m4a/aac"


def test_empty_input_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for source in (empty, b""):
        with pytest.raises(AudioDecodeError) as error:
            decode_audio(source, 16000)
        assert error.value.code == "empty"
        assert "empty" in error.value.reason


def test_wav_header_without_samples_is_empty():
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(wav_bytes(np.zeros(0, dtype=np.float32), 16000), 16000)
    assert error.value.code == "empty"


@pytest.mark.parametrize("data", [b"this is not audio at all" * 50, b"RIFF\x00\x00\x00\x00WAVEgarbage" * 20])
def test_garbage_is_undecodable(data):
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(data, 16000, name_hint="bad.wav")
    assert error.value.code == "undecodable"
    assert "not a decodable audio file" in error.value.reason


def test_truncated_mp3_decodes_the_audio_that_is_there(tmp_path):
    path = encode(tmp_path, ".mp3")
    data = path.read_bytes()
    decoded = decode_audio(data[: len(data) // 2], 16000, name_hint="half.mp3")
    assert 0.3 < decoded.duration < 0.8


def test_too_long_audio_stops_early_with_a_reason(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(440.0, 3.0, 8000), 8000)
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(path, 8000, max_seconds=2.0)
    assert error.value.code == "too-long"
    assert "3.0 s" in error.value.reason
    mp3 = encode(tmp_path, ".mp3", tone(440.0, 3.0, 44100))
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(mp3, 16000, max_seconds=2.0)
    assert error.value.code == "too-long"


def test_a_file_without_an_audio_stream_says_so(tmp_path):
    video = tmp_path / "silent-video.webm"
    subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:d=0.5",
         "-c:v", "libvpx", str(video)],
        check=True,
    )
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(video, 16000)
    assert error.value.code == "no-audio"
    assert "no audio stream" in error.value.reason


def test_playlists_pointing_at_other_files_are_not_followed(tmp_path):
    # Plain ffmpeg would decode the server-side file this playlist names; the demuxer whitelist refuses it.
    secret = encode(tmp_path, ".mp3", name="secret")
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(playlist, 16000)
    assert error.value.code == "undecodable"


def test_canonical_hash_matches_the_factories(tmp_path):
    samples = tone(523.0, 0.75, 16000, seed=9)
    decoded = decode_audio(wav_bytes(samples, 16000, subtype="FLOAT"), 16000)
    canonical = canonicalise(decoded)
    data, digest = canonical_wav(samples, 16000)
    assert canonical.content_hash == digest
    assert canonical.wav == data
    stored, rate = sf.read(io.BytesIO(canonical.wav), dtype="int16")
    assert rate == 16000 and stored.ndim == 1
    assert canonical.peak_dbfs == pytest.approx(20 * np.log10(np.max(np.abs(samples))), abs=0.05)


def test_ffmpeg_falls_back_to_the_imageio_binary(monkeypatch, tmp_path):
    import imageio_ffmpeg

    ffmpeg_binary.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        assert shutil.which("ffmpeg") is None
        binary = ffmpeg_binary()
        assert binary == imageio_ffmpeg.get_ffmpeg_exe()
        assert os.access(binary, os.X_OK)
        mp3 = encode(tmp_path, ".mp3")
        decoded = decode_audio(mp3, 16000)
        assert decoded.format == "mp3"
    finally:
        ffmpeg_binary.cache_clear()


def test_many_files_share_ffmpeg_processes_and_keep_their_own_results(tmp_path):
    from audioml.audio.decoding import decode_audio_many

    frequencies = [300.0, 500.0, 700.0, 900.0, 1100.0]
    mp3s = [encode(tmp_path, ".mp3", tone(f, 1.0, 44100, noise=0), name=f"tone{int(f)}") for f in frequencies[:3]]
    m4a = encode(tmp_path, ".m4a", tone(frequencies[3], 1.0, 44100, noise=0), name="tone-m4a")
    webm = encode(tmp_path, ".webm", tone(frequencies[4], 1.0, 48000, noise=0), sample_rate=48000, name="tone-webm")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\xff\xfb" + b"not really mpeg audio" * 30)
    sources = [(mp3s[0], "a.mp3"), (b"", "empty.mp3"), (mp3s[1], "b.mp3"), (garbage, "garbage.mp3"),
               (m4a.read_bytes(), "c.m4a"), (webm, "d.webm"), (mp3s[2], "e.mp3"),
               (wav_bytes(tone(1300.0, 1.0, 16000, noise=0), 16000), "f.wav")]
    results = decode_audio_many(sources, 16000)
    assert [type(result).__name__ for result in results] == [
        "DecodedAudio", "AudioDecodeError", "DecodedAudio", "AudioDecodeError", "DecodedAudio", "DecodedAudio", "DecodedAudio", "DecodedAudio",
    ]
    assert results[1].code == "empty" and results[3].code == "undecodable"
    decoded = [result for result in results if not isinstance(result, AudioDecodeError)]
    assert [result.format for result in decoded] == ["mp3", "mp3", "m4a/aac", "webm/opus", "mp3", "wav"]
    expected = [300.0, 500.0, 900.0, 1100.0, 700.0, 1300.0]
    assert [dominant_frequency(result.samples, 16000) for result in decoded] == pytest.approx(expected, abs=3.0)
    one_by_one = decode_audio(mp3s[0], 16000)
    assert np.array_equal(one_by_one.samples, decoded[0].samples)


def test_resampling_matches_torchaudio_functional_resample():
    import torch
    import torchaudio.functional

    from audioml.audio.resample import resample

    samples = tone(440.0, 0.5, 44100, seed=2)
    expected = torchaudio.functional.resample(torch.from_numpy(samples), 44100, 16000).numpy()
    assert np.array_equal(resample(samples, 44100, 16000), expected)
    assert np.array_equal(resample(samples, 44100, 16000), expected)  # the cached kernel gives the same again


def test_decoding_loads_neither_django_nor_torch_at_the_same_rate():
    """Prediction and ingestion share this decoder: it must stand alone, and only resampling may load torch."""
    script = (
        "import sys\n"
        "from audioml.audio.decoding import decode_audio\n"
        "from tests.audio import wav_bytes\n"
        "decoded = decode_audio(wav_bytes(seconds=0.5), 16000)\n"
        "assert (decoded.format, len(decoded.samples)) == ('wav', 8000), decoded\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'django', 'torch', 'torchaudio'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
