from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client

from audioml.models import ApiToken
from audioml.roles import APPROVER, TRAINER, VIEWER, grant
from tests.db_free import DATABASE_FIXTURES, UNREACHABLE_DATABASE_URL, touches_database
from tests.factories import AdminFactory, StaffFactory, TrainingJobFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_addoption(parser):
    parser.addoption(
        "--db-tests-only", action="store_true",
        help="leave out the tests that touch no database (CI's PostgreSQL run: they ran in its SQLite run; "
             "tests/db_free.py)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--db-tests-only"):
        database_free = [item for item in items if not touches_database(item)]
        config.hook.pytest_deselected(items=database_free)
        items[:] = [item for item in items if touches_database(item)]


@pytest.fixture(autouse=True)
def database_free_stays_free(request, monkeypatch):
    """A test counted as database-free (tests/db_free.py) must not reach a database another way: its subprocesses
    inherit an unreachable DATABASE_URL, and a database fixture it asks for at run time fails it."""
    if touches_database(request.node):
        yield
        return
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE_URL)
    yield
    asked = sorted(DATABASE_FIXTURES.intersection(request.fixturenames))
    if asked:
        pytest.fail(f"{request.node.nodeid} asked for {asked} at run time: name `db` (or `transactional_db`) in its "
                    "signature, or CI's PostgreSQL run (--db-tests-only) leaves it out as database-free")


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path):
    """Every test gets its own media and work folders."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.WORK_DIR = tmp_path / "work"
    settings.MEDIA_ROOT.mkdir()
    settings.WORK_DIR.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(settings.WORK_DIR / "uploads")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Test users get a cheap hash: each PBKDF2 hash with Django's 1,000,000 iterations costs about 0.4 s of CPU,
    and some 700 tests make a user. Login checks run the same code with any hasher (the throttle tests log in)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_user(db):
    return AdminFactory(username="admin-persona")


@pytest.fixture
def staff_user(db):
    """Staff holding all three roles (viewer, trainer, approver) but not a superuser: can do everything the roles
    allow, which is everything except the superuser-only permanent deletions (datasets, versions, emptying the
    trash). For one role at a time use viewer_user, trainer_user, approver_user; roleless_staff has none."""
    return _staff_with_roles("staff-persona", VIEWER, TRAINER, APPROVER)


def _staff_with_roles(username: str, *roles: str):
    user = StaffFactory(username=username)
    for role in roles:
        grant(user, role)
    return type(user).objects.get(pk=user.pk)  # a fresh instance: permission caches are per instance


@pytest.fixture
def viewer_user(db):
    """Staff with the viewer role: reads, listens, downloads and tries models; changes nothing."""
    return _staff_with_roles("viewer-persona", VIEWER)


@pytest.fixture
def trainer_user(db):
    """Staff with the trainer role: datasets, clips and training jobs."""
    return _staff_with_roles("trainer-persona", TRAINER)


@pytest.fixture
def approver_user(db):
    """Staff with the approver role: aliases, archiving versions, version and model notes."""
    return _staff_with_roles("approver-persona", APPROVER)


@pytest.fixture
def roleless_staff(db):
    """Staff without any role: may log in, manage their own API tokens and log out; sees no data."""
    return StaffFactory(username="roleless-persona")


@pytest.fixture
def outsider(db):
    """Logged in, but not staff: the panel and the API refuse them."""
    return UserFactory(username="outsider-persona")


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def outsider_client(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(viewer_user) -> Client:
    return _logged_in(viewer_user)


@pytest.fixture
def trainer_client(trainer_user) -> Client:
    return _logged_in(trainer_user)


@pytest.fixture
def approver_client(approver_user) -> Client:
    return _logged_in(approver_user)


@pytest.fixture
def roleless_client(roleless_staff) -> Client:
    return _logged_in(roleless_staff)


@pytest.fixture
def token_client():
    """token_client(user) -> a Client that authenticates with a new bearer token of that user and checks CSRF
    like the real server (for role tests through the API)."""

    def make(user) -> Client:
        _, raw = ApiToken.issue(user, "tests")
        return Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {raw}"})

    return make


@pytest.fixture
def api_token(admin_user) -> str:
    _, raw = ApiToken.issue(admin_user, "tests")
    return raw


@pytest.fixture
def api(api_token) -> Client:
    """A client that authenticates with a bearer token and checks CSRF like the real server."""
    return Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {api_token}"})


@pytest.fixture(scope="session")
def trained_artifacts(tmp_path_factory) -> Path:
    """The session's tiny real model (tests/tiny_model.py), which the registry, roles, ops, storage and e2e tests
    register as many versions as they need. Defined here only: a session-scoped fixture imported into several
    conftest files is a fixture of each, and trained the model once per importing folder (five times a run)."""
    from tests.tiny_model import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def register(trained_artifacts, db):
    """register(model_name="keywords", **job_fields) -> ModelVersion of a succeeded job, through the registry's
    side of the worker's hand-off (training_app.tasks.hand_off)."""
    from registry_app.models import ModelVersion

    def _register(model_name: str = "keywords", **job_fields):
        job = TrainingJobFactory(model_name=model_name, **job_fields)
        return ModelVersion.objects.register_from_job(job, trained_artifacts)

    return _register


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite test databases live in a file, so worker subprocesses started by a test can share them."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """A real S3 protocol endpoint for the session: moto_server on a free loopback port (fails, never skips, when
    it cannot start)."""
    from tests.ops.servers import start_moto_server, stop

    process, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto_server.log")
    yield endpoint
    stop(process)


@dataclass
class S3Bucket:
    endpoint: str
    name: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.env["AWS_S3_REGION_NAME"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return {entry["Key"] for page in pages for entry in page.get("Contents", ())}

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def s3_storage(settings, s3_endpoint, monkeypatch) -> S3Bucket:
    """This test's media storage is a fresh bucket on the session's moto_server, configured exactly as
    AWS_STORAGE_BUCKET_NAME and its companions configure production (settings.s3_storage_options). The variables
    are in os.environ too, so `subprocess_env` (qcluster, gunicorn, commands) points its processes at the bucket;
    MEDIA_ROOT stays empty, which the tests check."""
    from audioml.settings import s3_storage_options
    from tests.ops.servers import create_bucket, s3_env

    bucket = S3Bucket(s3_endpoint, f"audioml-{uuid.uuid4().hex[:16]}")
    create_bucket(s3_endpoint, bucket.name)
    bucket.env = s3_env(s3_endpoint, bucket.name)
    for key, value in bucket.env.items():
        monkeypatch.setenv(key, value)
    settings.AWS_STORAGE_BUCKET_NAME = bucket.name
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_storage_options(bucket.name)},
    }
    return bucket


@pytest.fixture
def subprocess_env(request, settings, transactional_db):
    """Environment for a subprocess (a real qcluster, a management command) that must use this test's
    database, media and work folders (or its bucket, with `s3_storage`). Use it with transactional tests so the
    rows are committed."""
    from django.db import connection

    if "s3_storage" in request.fixturenames:
        request.getfixturevalue("s3_storage")  # its variables must be in os.environ before it is copied

    database = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{database['NAME']}"
    else:
        auth = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
        url = f"postgres://{auth}@{database['HOST'] or 'localhost'}:{database['PORT'] or 5432}/{database['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "audioml.settings",
        "DATABASE_URL": url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "AUDIOML_WORK_DIR": str(settings.WORK_DIR),
        "FILE_UPLOAD_TEMP_DIR": str(settings.FILE_UPLOAD_TEMP_DIR),
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }


@pytest.fixture(params=["orm", "redis"])
def broker(request, monkeypatch):
    """Run the test once on each django-q2 broker: the ORM and Redis (tests/brokers.py)."""
    from tests.brokers import BrokerUnderTest

    under_test = BrokerUnderTest(request.param)
    under_test.configure(monkeypatch)
    yield under_test
    under_test.clear()
