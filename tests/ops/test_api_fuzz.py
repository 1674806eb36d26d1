"""API fuzzing: schemathesis generates requests for every operation in the project's own OpenAPI schema.

Requests go through the real WSGI application (every middleware, bearer-token authentication as a superuser)
and each answer must be no 5xx, and a documented answer must match its schema and content type. Path
parameters are mostly drawn from seeded data (a dataset with clips, a trained model with two versions and a
`production` alias, a job with logs, a token), so operations are exercised beyond their 404s; the rest are
whatever the fuzzer makes up. Every request runs in a savepoint that is rolled back, so one example (say, a
DELETE) cannot starve the next of data. The run is bounded and deterministic: 25 examples per operation,
derandomised, no deadline.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import content_type_conformance, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from audioml.api import api
from audioml.models import ApiToken
from audioml.wsgi import application
from datasets_app.models import Clip
from registry_app.models import Alias
from tests.factories import ClipFactory, DatasetFactory
from training_app.models import JobLog

# FUZZ_EXAMPLES=500 FUZZ_RANDOM=1 pytest tests/ops/test_api_fuzz.py digs deeper (new examples on every run).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
DETERMINISTIC = not os.environ.get("FUZZ_RANDOM")
PROBES = {"/api/health", "/api/ready"}
SEEDED_SHARE = 0.8  # how often a path parameter is a seeded value rather than a made-up one
# Seeded rows get fixed ids, so the fuzzer's dictionaries can name them before the database exists.
CLIP_IDS = list(range(910001, 910013))
JOB_IDS = [920001, 920002]
TOKEN_ID = 930001
SEEDS = {
    "datasets": ["fuzz"],
    "models": ["fuzz-model"],
    "clips": CLIP_IDS,
    "jobs": JOB_IDS,
    "tokens": [TOKEN_ID],
    "versions": ["1", "v2"],
    "aliases": ["production"],
    "artifacts": ["config.json", "metrics.json"],
}


def bound(dictionary: str) -> dict:
    return {"dictionary": dictionary, "probability": SEEDED_SHARE}


CONFIG = schemathesis.config.SchemathesisConfig.from_dict({
    "dictionaries": {name: {"values": values} for name, values in SEEDS.items()},
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": DETERMINISTIC},
    "operations": [
        {"include-tag": "datasets", "parameters": {"path.name": bound("datasets"), "path.clip_id": bound("clips")}},
        {"include-tag": "models", "parameters": {
            "path.name": bound("models"), "path.version": bound("versions"), "path.alias": bound("aliases"),
            "path.artifact": bound("artifacts"),
        }},
        {"include-tag": "jobs", "parameters": {"path.job_id": bound("jobs")}},
        {"include-tag": "tokens", "parameters": {"path.token_id": bound("tokens")}},
    ],
})

# The schema comes straight from the NinjaAPI (generating it needs no database), so every operation is a test
# of its own; the requests go to the WSGI application.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema(), config=CONFIG)
schema.app = application


@pytest.fixture
def seeded(db, register, admin_user):
    dataset = DatasetFactory(name="fuzz", created_by=admin_user)
    tones = [(label, base + 29.0 * i) for label, base in (("low", 300.0), ("high", 1500.0)) for i in range(6)]
    clips = [ClipFactory(id=clip_id, dataset=dataset, label=label, frequency=frequency, seconds=0.5)
             for clip_id, (label, frequency) in zip(CLIP_IDS, tones, strict=True)]
    Clip.objects.filter(pk=clips[-1].pk).trash(admin_user)
    first = register("fuzz-model", id=JOB_IDS[0], dataset=dataset, created_by=admin_user)
    second = register("fuzz-model", id=JOB_IDS[1], dataset=dataset, created_by=admin_user)
    Alias.point(first.model, "production", first, by=admin_user, note="seed")
    Alias.point(first.model, "production", second, by=admin_user, note="seed")
    first.job.log(JobLog.Level.INFO, "seeded log line")
    token, raw = ApiToken.issue(admin_user, "fuzzing")
    ApiToken.objects.filter(pk=token.pk).update(id=TOKEN_ID)
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def requests_share_the_test_transaction():
    """Requests run in the test's own transaction (as with Django's test client): the request signals must
    not close the connection under it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, derandomize=DETERMINISTIC, deadline=None, database=None,
    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
def test_operation_answers_without_server_errors_or_schema_violations(case, seeded, requests_share_the_test_transaction):
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    if case.operation.path in PROBES:
        # A probe's 503 is its documented answer while a dependency is down (no worker runs here).
        checks = [status_code_conformance, response_schema_conformance, content_type_conformance]
    with transaction.atomic():
        case.call_and_validate(headers=seeded, checks=checks)
        transaction.set_rollback(True)
