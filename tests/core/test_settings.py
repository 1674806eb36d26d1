"""Settings come from the environment, with safe defaults and loud failures on bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from audioml.settings import database_from_url, envbool, envdevice, envint

ROOT = Path(__file__).resolve().parents[2]


def _settings_in_subprocess(tmp_path, expression: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL")}
    clean.update({"DJANGO_SETTINGS_MODULE": "audioml.settings", "AUDIOML_DATA_DIR": str(tmp_path / "data")}, **env)
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_envbool_accepts_only_true_or_false(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "yes")
    with pytest.raises(ImproperlyConfigured, match="use True or False"):
        envbool("SOME_FLAG", "False")
    monkeypatch.setenv("SOME_FLAG", "True")
    assert envbool("SOME_FLAG", "False") is True


def test_envint_rejects_garbage(monkeypatch):
    monkeypatch.setenv("Q_WORKERS", "many")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        envint("Q_WORKERS", 1)


def test_device_settings_are_checked_without_importing_torch(monkeypatch):
    monkeypatch.delenv("TRAINING_DEVICE", raising=False)
    assert envdevice("TRAINING_DEVICE", "auto") == "auto"
    monkeypatch.setenv("TRAINING_DEVICE", "cuda:1")
    assert envdevice("TRAINING_DEVICE", "auto") == "cuda:1"
    monkeypatch.setenv("INFERENCE_DEVICE", "gpu0")
    with pytest.raises(ImproperlyConfigured, match="INFERENCE_DEVICE='gpu0': use auto, cpu, cuda or cuda:N"):
        envdevice("INFERENCE_DEVICE", "cpu")


def test_database_url_parsing(tmp_path):
    pg = database_from_url("postgres://alice:s%40cret@db.example:6543/audio")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == ("alice", "s@cret", "db.example", "6543", "audio")
    assert pg["CONN_HEALTH_CHECKS"] is True
    lite = database_from_url(f"sqlite:///{tmp_path}/x.sqlite3")
    assert str(lite["NAME"]) == f"{tmp_path}/x.sqlite3"
    with pytest.raises(ImproperlyConfigured):
        database_from_url("mysql://nope")


def test_secret_key_is_generated_once_and_kept_in_the_data_folder(tmp_path):
    first = _settings_in_subprocess(tmp_path, "settings.SECRET_KEY")
    second = _settings_in_subprocess(tmp_path, "settings.SECRET_KEY")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.read_text().strip() == first.stdout.strip()
    assert oct(key_file.stat().st_mode)[-3:] == "600"


def test_environment_overrides_defaults(tmp_path):
    result = _settings_in_subprocess(
        tmp_path,
        "settings.SECRET_KEY, settings.DEBUG, settings.ALLOWED_HOSTS, settings.MEDIA_ROOT, settings.MAX_UPLOAD_BYTES, "
        "settings.Q_CLUSTER['ALT_CLUSTERS']['training']['workers'], settings.DATABASES['default']['ENGINE']",
        SECRET_KEY="k" * 60, DEBUG="True", ALLOWED_HOSTS="audio.example.com,10.0.0.2", MEDIA_ROOT=str(tmp_path / "m"),
        MAX_UPLOAD_BYTES="123456", Q_WORKERS="3", DATABASE_URL="postgres://u@h:5432/n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "k" * 60, "True", "['audio.example.com',", "'10.0.0.2']", str(tmp_path / "m"), "123456", "3",
        "django.db.backends.postgresql",
    ]


def test_defaults_are_safe(tmp_path):
    result = _settings_in_subprocess(tmp_path, "settings.DEBUG, settings.DATABASES['default']['ENGINE'], settings.Q_CLUSTER['orm']")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.sqlite3", "default"]


def test_openmp_threads_sleep_when_idle_unless_the_environment_says_otherwise():
    code = "import os, audioml; print(os.environ['OMP_WAIT_POLICY'])"
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}

    def policy(**env) -> str:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**environment, **env},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert policy() == "PASSIVE"
    assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_bad_value_fails_loudly(tmp_path):
    result = _settings_in_subprocess(tmp_path, "settings.DEBUG", DEBUG="yes")
    assert result.returncode != 0
    assert "DEBUG='yes': use True or False" in result.stderr


def test_check_deploy_is_clean_with_production_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(
        DJANGO_SETTINGS_MODULE="audioml.settings", AUDIOML_DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY="x7!Qm2#pL9vR4$tW8zY1@cF6&hJ3*kN5^bD0%gS" * 2, DEBUG="False", ALLOWED_HOSTS="audio.example.com",
        SECURE_SSL_REDIRECT="True", SESSION_COOKIE_SECURE="True", CSRF_COOKIE_SECURE="True",
        SECURE_HSTS_SECONDS="31536000", SECURE_HSTS_PRELOAD="True",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_https_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECURE_SSL_REDIRECT", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(DJANGO_SETTINGS_MODULE="audioml.settings", AUDIOML_DATA_DIR=str(tmp_path / "data"), DEBUG="False")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stdout + result.stderr


def test_a_bucket_name_moves_the_media_to_s3_and_none_keeps_local_files(tmp_path):
    expression = ("settings.STORAGES['default']['BACKEND'], settings.STORAGES['default'].get('OPTIONS', {}).get('bucket_name'), "
                  "settings.STORAGES['default'].get('OPTIONS', {}).get('endpoint_url'), "
                  "settings.STORAGES['default'].get('OPTIONS', {}).get('file_overwrite')")
    local = _settings_in_subprocess(tmp_path, expression, AWS_STORAGE_BUCKET_NAME="")
    assert local.returncode == 0, local.stderr
    assert local.stdout.split() == ["django.core.files.storage.FileSystemStorage", "None", "None", "None"]
    s3 = _settings_in_subprocess(tmp_path, expression, AWS_STORAGE_BUCKET_NAME="audio-media",
                                 AWS_S3_ENDPOINT_URL="http://s3.internal:8333")
    assert s3.returncode == 0, s3.stderr
    assert s3.stdout.split() == ["storages.backends.s3.S3Storage", "audio-media", "http://s3.internal:8333", "False"]
