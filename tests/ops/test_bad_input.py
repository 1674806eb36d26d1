"""The bad input matrix: every case is answered with a clear 4xx (a problem-details body for the API) and stores
nothing: no row in any table, no file in the media or work folders.

The cases go through the real HTTP stack (middleware, authentication, CSRF) with Django's test client. Deeper
unit tests of the same rules live with their apps: decoding in tests/datasets/test_decode.py, per-file
rejection reasons in tests/datasets/test_ingest.py, archive safety in tests/datasets/test_import.py, tokens in
tests/core/test_tokens.py, predictions in tests/registry/test_predict.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from django.apps import apps
from django.contrib.auth import get_user_model
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from audioml.audio.decoding import ffmpeg_binary
from audioml.models import ApiToken
from datasets_app.models import Clip, clip_storage_name
from registry_app.models import Alias
from tests.audio import tone, wav_bytes, zip_bytes
from tests.factories import ClipFactory, DatasetFactory

PROBLEM = "application/problem+json"
TWO_HOURS = 2 * 3600


def wav(seconds: float = 0.5, frequency: float = 440.0) -> bytes:
    return wav_bytes(tone(frequency, seconds))


def upload(name: str, data: bytes, content_type: str = "audio/wav") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@cache
def two_hour_mp3() -> bytes:
    """Two hours of a tone as an 8 kbit/s MP3 (7 MB): ten seconds encoded once, then its frames repeated."""
    with tempfile.TemporaryDirectory() as folder:
        ten, full = Path(folder) / "ten-seconds.mp3", Path(folder) / "two-hours.mp3"
        run = [ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y"]
        subprocess.run([*run, "-f", "lavfi", "-i", "sine=frequency=440:duration=10:sample_rate=8000", "-ac", "1",
                        "-c:a", "libmp3lame", "-b:a", "8k", str(ten)], check=True, timeout=60)
        subprocess.run([*run, "-stream_loop", str(TWO_HOURS // 10 - 1), "-i", str(ten), "-c", "copy", str(full)],
                       check=True, timeout=60)
        return full.read_bytes()


@cache
def two_hour_wav() -> bytes:
    """Two hours of a tone as 8-bit PCM at 1 kHz (7 MB), read by soundfile rather than ffmpeg."""
    samples = (0.5 * np.sin(2 * np.pi * 100 * np.arange(TWO_HOURS * 1000) / 1000)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, 1000, format="WAV", subtype="PCM_U8")
    return buffer.getvalue()


def truncated_wav() -> bytes:
    return wav(1.0)[:30]  # cut inside the header


def corrupt_wav() -> bytes:
    data = bytearray(wav(1.0))
    data[8:16] = b"JUNKJUNK"  # "WAVEfmt " overwritten: a RIFF file of no known kind
    return bytes(data)


def zip_bomb() -> bytes:
    return zip_bytes({"yes/bomb.wav": b"\0" * (64 * 1024 * 1024)})


def many_entries_zip() -> bytes:
    return zip_bytes({f"yes/{n}.wav": wav(0.2, 300 + 20 * n) for n in range(6)})  # ZIP_MAX_ENTRIES is set to 5


def latin1_manifest_zip() -> bytes:
    manifest = "file,label,transcript\na.wav,yes,caf\u00e9 cr\u00e8me\n".encode("latin-1")
    return zip_bytes({"manifest.csv": manifest, "a.wav": wav()})


# --------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One bad request: how to send it and what the answer must say."""

    id: str
    method: str
    url: str
    body: Callable[[], dict[str, Any]] = dict  # keyword arguments for the test client's method
    status: int = 422
    code: str | None = None  # the problem's type is urn:audioml:problem:<code>
    words: str = ""  # a phrase the detail must contain
    client: str = "token"  # token, session (without CSRF), expired, revoked, unknown, malformed, basic
    settings: dict[str, Any] = field(default_factory=dict)


def files(*uploads: SimpleUploadedFile, **fields) -> dict:
    return {"data": {"files": list(uploads), **fields}}


def archive(data: bytes, name: str = "data.zip") -> dict:
    return {"data": {"file": upload(name, data, "application/zip")}}


def raw(data: bytes, content_type: str = "application/json") -> dict:
    return {"data": data, "content_type": content_type}


def as_json(value: Any) -> dict:
    return raw(json.dumps(value).encode())


def multipart_file_named(name: str, data: bytes) -> dict:
    """A multipart body built by hand (the test client refuses to send a file called '..')."""
    boundary = "matrix-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: audio/wav\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return raw(body, f"multipart/form-data; boundary={boundary}")


UPLOAD = "/api/datasets/kws/clips"
IMPORT = "/api/datasets/kws/import"
PREDICT = "/api/models/tones/predict"

CASES = [
    # Audio files that cannot become clips.
    Case("corrupt-audio", "post", UPLOAD, lambda: files(upload("corrupt.wav", corrupt_wav())),
         code="nothing-added", words="not a decodable audio file"),
    Case("truncated-audio", "post", UPLOAD, lambda: files(upload("truncated.wav", truncated_wav())),
         code="nothing-added", words="truncated.wav: "),
    Case("text-named-wav", "post", UPLOAD, lambda: files(upload("notes.wav", b"Shopping list: milk, eggs.\n" * 40)),
         code="nothing-added", words="not a decodable audio file"),
    Case("zero-bytes", "post", UPLOAD, lambda: files(upload("empty.wav", b"")),
         code="nothing-added", words="empty"),
    Case("two-hour-mp3", "post", UPLOAD, lambda: files(upload("long.mp3", two_hour_mp3(), "audio/mpeg")),
         code="nothing-added", words="too long"),
    Case("two-hour-wav", "post", UPLOAD, lambda: files(upload("long.wav", two_hour_wav())),
         code="nothing-added", words="too long"),
    Case("several-bad-files", "post", UPLOAD,
         lambda: files(upload("a.wav", b""), upload("b.wav", b"text" * 100), upload("c.wav", truncated_wav())),
         code="nothing-added", words="None of the 3 files was added"),
    Case("background-corrupt", "post", UPLOAD, lambda: files(upload("corrupt.wav", corrupt_wav()), background="true"),
         code="nothing-added", words="corrupt.wav: not a decodable audio file"),
    Case("background-over-its-limit", "post", UPLOAD,
         lambda: files(upload("long.mp3", two_hour_mp3(), "audio/mpeg"), background="true"),
         code="nothing-added", words="BACKGROUND_MAX_SECONDS=3600", settings={"BACKGROUND_MAX_SECONDS": 3600}),
    Case("background-not-a-boolean", "post", UPLOAD, lambda: files(upload("a.wav", wav()), background="maybe"),
         code="validation-error", words="background"),
    Case("no-files", "post", UPLOAD, lambda: {"data": {"label": "yes"}}, code="validation-error", words="files"),
    Case("file-named-dot-dot", "post", UPLOAD, lambda: multipart_file_named("..", wav()), code="validation-error",
         words="files"),
    Case("predict-corrupt", "post", PREDICT, lambda: files(upload("corrupt.wav", corrupt_wav())),
         code="undecodable-audio"),
    Case("predict-zero-bytes", "post", PREDICT, lambda: files(upload("empty.wav", b"")), code="undecodable-audio"),
    # Too long is not undecodable (issue 10 item 11): 413 with its own type.
    Case("predict-two-hours", "post", PREDICT, lambda: files(upload("long.mp3", two_hour_mp3(), "audio/mpeg")),
         status=413, code="audio-too-long", words="longer than 600 s"),
    Case("predict-too-much-in-one-request", "post", PREDICT,
         lambda: files(*(upload(f"{n}.wav", wav(1.0, 300.0 + 50 * n)) for n in range(3))),
         status=413, code="prediction-too-large", settings={"PREDICT_MAX_REQUEST_SECONDS": 2.5}),
    # Archives.
    Case("zip-too-many-entries", "post", IMPORT, lambda: archive(many_entries_zip()), code="archive-refused",
         words="at most 5 are accepted", settings={"ZIP_MAX_ENTRIES": 5}),
    Case("zip-bomb", "post", IMPORT, lambda: archive(zip_bomb()), code="archive-refused", words="zip bomb"),
    Case("zip-dot-dot-entry", "post", IMPORT, lambda: archive(zip_bytes({"yes/a.wav": wav(), "../../evil.wav": wav(0.3)})),
         code="archive-refused", words="contains '..'"),
    Case("zip-absolute-entry", "post", IMPORT, lambda: archive(zip_bytes({"/etc/cron.d/evil.wav": wav()})),
         code="archive-refused", words="absolute path"),
    Case("zip-windows-absolute-entry", "post", IMPORT, lambda: archive(zip_bytes({"C:\\evil.wav": wav()})),
         code="archive-refused", words="absolute path"),
    Case("zip-non-utf8-manifest", "post", IMPORT, lambda: archive(latin1_manifest_zip()), code="archive-refused",
         words="manifest.csv is not UTF-8 text (byte 0xe9 on line 2)"),
    Case("not-a-zip", "post", IMPORT, lambda: archive(b"PK\x03\x04 but not really a zip" * 10),
         code="archive-refused", words="not a valid zip archive"),
    Case("zip-without-audio", "post", IMPORT, lambda: archive(zip_bytes({"README.md": b"# notes"})),
         code="nothing-added", words="holds no audio files"),
    # Names that try to be paths.
    Case("dataset-name-dot-dot", "post", "/api/datasets", lambda: as_json({"name": "../evil"}),
         code="validation-error", words="name"),
    Case("dataset-name-absolute", "post", "/api/datasets", lambda: as_json({"name": "/etc/evil"}),
         code="validation-error", words="name"),
    Case("model-name-dot-dot", "post", "/api/jobs", lambda: as_json({"dataset": "kws", "model_name": "../evil"}),
         words="model"),
    Case("artifact-dot-dot", "get", "/api/models/tones/versions/1/artifacts/..%2F..%2Fsettings.py", status=404),
    Case("dataset-path-dot-dot", "get", "/api/datasets/..%2F..%2Fetc/clips", status=404),
    # Oversized, malformed and mistyped bodies.
    Case("json-over-memory-limit", "post", "/api/datasets", lambda: as_json({"name": "big", "description": "x" * 20000}),
         status=413, code="payload-too-large", settings={"DATA_UPLOAD_MAX_MEMORY_SIZE": 10000}),
    Case("json-over-upload-limit", "post", "/api/datasets", lambda: as_json({"name": "big", "description": "x" * 9000}),
         status=413, code="payload-too-large", words="MAX_UPLOAD_BYTES", settings={"MAX_UPLOAD_BYTES": 4096}),
    Case("invalid-utf8-json", "post", "/api/datasets", lambda: raw(b'{"name": "caf\xe9", "description": "\xff\xfe"}'),
         status=400, code="invalid-body", words="not UTF-8 (byte 0xe9 at position 13)"),
    Case("invalid-utf8-json-patch", "patch", "/api/datasets/kws/clips/CLIP", lambda: raw(b'{"label": "\xc3\x28"}'),
         status=400, code="invalid-body", words="not UTF-8"),
    Case("malformed-json", "post", "/api/datasets", lambda: raw(b'{"name": "x",'), status=400, code="invalid-json",
         words="not valid JSON"),
    Case("json-array-not-object", "post", "/api/datasets", lambda: as_json(["kws"]), code="validation-error"),
    Case("nul-in-json", "post", "/api/datasets", lambda: as_json({"name": "ok", "description": "a\x00b"}),
         code="nul-character", words="payload.description"),
    Case("nul-in-query", "get", "/api/datasets/kws/clips?q=a%00b", code="nul-character", words="q"),
    Case("huge-integer-in-body", "post", "/api/datasets/kws/clips/trash", lambda: as_json({"ids": [10**30]}),
         code="validation-error", words="less than or equal"),
    Case("huge-offset", "get", "/api/jobs?offset=99999999999999999999999", code="validation-error"),
    Case("text-plain-for-json", "post", "/api/datasets", lambda: raw(b'{"name": "plain"}', "text/plain"),
         status=415, code="unsupported-media-type", words="Content-Type: application/json (this request says text/plain)"),
    Case("form-for-json", "post", "/api/datasets", lambda: {"data": {"name": "formy"}}, status=415,
         code="unsupported-media-type", words="multipart/form-data"),
    Case("urlencoded-for-json", "patch", "/api/datasets/kws", lambda: raw(b"description=x", "application/x-www-form-urlencoded"),
         status=415, code="unsupported-media-type"),
    Case("json-for-upload", "post", UPLOAD, lambda: as_json({"files": ["a.wav"]}), code="validation-error",
         words="files"),
    Case("xml-for-upload", "post", UPLOAD, lambda: raw(b"<clips><file>a.wav</file></clips>", "application/xml"),
         code="validation-error"),
    Case("wrong-method", "delete", "/api/datasets", status=405, code="method-not-allowed",
         words="DELETE is not allowed on /api/datasets"),
    Case("post-to-unknown-api-url", "post", "/api/jobs/null/cancel", status=404, code="not-found", client="session"),
    # Credentials.
    Case("expired-token", "post", "/api/datasets", lambda: as_json({"name": "late"}), status=401,
         code="unauthenticated", client="expired"),
    Case("revoked-token", "post", UPLOAD, lambda: files(upload("a.wav", wav())), status=401, code="unauthenticated",
         client="revoked"),
    Case("unknown-token", "post", "/api/datasets", lambda: as_json({"name": "who"}), status=401,
         code="unauthenticated", client="unknown"),
    Case("malformed-authorization", "post", "/api/datasets", lambda: as_json({"name": "who"}), status=401,
         code="unauthenticated", client="malformed"),
    Case("basic-authorization", "post", "/api/datasets", lambda: as_json({"name": "who"}), status=401,
         code="unauthenticated", client="basic"),
    Case("session-api-post-without-csrf", "post", "/api/datasets", lambda: as_json({"name": "csrf"}), status=403,
         words="CSRF", client="session"),
    Case("session-api-upload-without-csrf", "post", UPLOAD, lambda: files(upload("a.wav", wav())), status=403,
         words="CSRF", client="session"),
    Case("session-api-promote-without-csrf", "put", "/api/models/tones/aliases/production",
         lambda: as_json({"version": 1}), status=403, words="CSRF", client="session"),
]


# --------------------------------------------------------------------------------------------------- state


def stored_state() -> dict[str, Any]:
    """Row counts of every table of ours and Django's auth, plus every file under the media and work folders."""
    counts = {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.app_label in {"audioml", "auth", "datasets_app", "training_app", "registry_app", "django_q"}
    }
    files_on_disk = sorted(
        str(path.relative_to(root.parent)) for root in (Path(settings.MEDIA_ROOT), Path(settings.WORK_DIR))
        for path in root.rglob("*") if path.is_file()
    )
    return {"rows": counts, "files": files_on_disk}


@pytest.fixture
def world(db, admin_user, register):
    """A dataset with a clip, a registered model with a production alias, and a client per credential."""
    dataset = DatasetFactory(name="kws")
    clip = ClipFactory(dataset=dataset, label="yes")
    version = register("tones", dataset=dataset)
    Alias.point(version.model, "production", version, by=admin_user)
    _, good = ApiToken.issue(admin_user, "good")
    _, expired = ApiToken.issue(admin_user, "old", expires_at=timezone.now() - timedelta(minutes=1))
    revoked_token, revoked = ApiToken.issue(admin_user, "gone")
    revoked_token.revoke()
    session = Client(enforce_csrf_checks=True)
    session.force_login(get_user_model().objects.create(username="csrf-less", is_staff=True, is_superuser=True))

    def bearer(value: str) -> Client:
        return Client(enforce_csrf_checks=True, headers={"Authorization": value})

    clients = {
        "token": bearer(f"Bearer {good}"),
        "expired": bearer(f"Bearer {expired}"),
        "revoked": bearer(f"Bearer {revoked}"),
        "unknown": bearer("Bearer aml_" + "x" * 40),
        "malformed": bearer("Bearer"),
        "basic": bearer("Basic YWRtaW46YWRtaW4="),
        "session": session,
    }
    return {"clients": clients, "clip": clip}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_a_clear_4xx_and_stores_nothing(case: Case, world, settings):
    for name, value in case.settings.items():
        setattr(settings, name, value)
    url = case.url.replace("CLIP", str(world["clip"].pk))
    request = case.body()
    before = stored_state()

    response = getattr(world["clients"][case.client], case.method)(url, **request)

    assert response.status_code == case.status, response.content[:2000]
    body = response.content.decode(errors="replace")
    if url.startswith("/api/"):
        assert response["Content-Type"] == PROBLEM, body[:500]
        problem = response.json()
        assert problem["status"] == case.status
        assert problem["title"] and problem["detail"]
        assert problem["request_id"] == response["X-Request-ID"]
        if case.code:
            assert problem["type"] == f"urn:audioml:problem:{case.code}", problem
        body = problem["detail"]
    assert case.words in body, body[:2000]
    assert stored_state() == before


def test_rejected_files_are_each_named_with_their_reason_in_the_problem(world):
    response = world["clients"]["token"].post(UPLOAD, files(
        upload("empty.wav", b""), upload("notes.wav", b"not audio" * 50), upload("tiny.wav", wav(0.02)),
        upload("silent.wav", wav_bytes(np.zeros(8000, dtype=np.float32))),
    )["data"])
    assert response.status_code == 422
    problem = response.json()
    assert (problem["accepted"], problem["rejected"]) == (0, 4)
    assert [(f["name"], f["status"], f["code"]) for f in problem["files"]] == [
        ("empty.wav", "rejected", "empty"), ("notes.wav", "rejected", "undecodable"),
        ("tiny.wav", "rejected", "too-short"), ("silent.wav", "rejected", "silent"),
    ]
    assert problem["detail"].startswith("None of the 4 files was added: empty.wav: ")
    assert problem["field"] == "files"


def test_a_path_in_an_uploaded_file_name_is_reduced_to_its_base_name_and_never_used_as_a_path(world, tmp_path):
    """Multipart file names lose any folder part before the application sees them (Django's parser), and a clip's
    file is named after its content hash, so a name cannot place a file anywhere: the upload is a normal clip."""
    outside = tmp_path.parent / "outside.wav"
    response = world["clients"]["token"].post(UPLOAD, files(
        upload("../../outside.wav", wav(0.5, 700)), upload("/etc/cron.d/evil.wav", wav(0.5, 900)),
        upload("..\\..\\windows.wav", wav(0.5, 1100)),
    )["data"])
    assert response.status_code == 200, response.content
    names = [entry["name"] for entry in response.json()["files"]]
    assert names == ["outside.wav", "evil.wav", "windows.wav"]
    assert not outside.exists()
    clips = Clip.objects.filter(original_name__in=names)
    assert clips.count() == 3
    for clip in clips:
        assert clip.audio.name == clip_storage_name(clip.dataset_id, clip.content_hash)
        assert Path(clip.audio.path).resolve().is_relative_to(Path(settings.MEDIA_ROOT).resolve())


def test_a_utf16_manifest_with_a_bom_is_read(world):
    """Excel's "Unicode text" export: refused only when it cannot be decoded, so the refusal above is specific."""
    manifest = "file,label,transcript\na.wav,yes,caf\u00e9 cr\u00e8me\n".encode("utf-16")
    response = world["clients"]["token"].post(IMPORT, archive(zip_bytes({"manifest.csv": manifest, "a.wav": wav(0.4, 555)}))["data"])
    assert response.status_code == 200, response.content
    assert Clip.objects.get(original_name="a.wav").transcript == "caf\u00e9 cr\u00e8me"


PANEL_POSTS = [
    ("/datasets/", {"name": "csrf-dataset", "sample_rate": "16000"}),
    ("/datasets/kws/clips/CLIP/edit/label/", {"value": "changed"}),
    ("/datasets/kws/clips/CLIP/trash/", {}),
    ("/training/new/", {"dataset": "kws", "model_name": "csrf-model", "preset": "quick"}),
    ("/models/tones/aliases/promote/", {"alias": "staging", "version": "1", "note": "no token"}),
    ("/account/tokens/", {"name": "csrf-token"}),
]


@pytest.mark.parametrize(("url", "data"), PANEL_POSTS, ids=[url for url, _ in PANEL_POSTS])
def test_panel_form_posts_without_a_csrf_token_are_403_and_store_nothing(world, url, data):
    url = url.replace("CLIP", str(world["clip"].pk))
    before = stored_state()
    response = world["clients"]["session"].post(url, data)
    assert response.status_code == 403
    assert b"CSRF verification failed" in response.content
    assert stored_state() == before
