"""Traffic split (proportions, stickiness), shadow versions (off the request path), and their alias history."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from django.core.management import call_command

from audioml.models import AuditEvent
from registry_app import traffic
from registry_app.aliases import KEEP
from registry_app.errors import NothingToRollBack, VersionAliased
from registry_app.models import Alias, PredictionLog
from tests.registry.conftest import wav_upload


@pytest.fixture
def versions(register):
    return [register("keywords") for _ in range(3)]


def _put(client, alias: str, body: dict, name: str = "keywords"):
    return client.put(f"/api/models/{name}/aliases/{alias}", json.dumps(body), content_type="application/json")


def test_a_ten_percent_split_sends_about_a_tenth_of_many_callers_to_the_split_version(versions):
    v1, v2, _ = versions
    Alias.point(v1.model, "production", v1, split=(v2, 10))
    arms = Counter(traffic.choose_arm("keywords", "production", 10, f"device-{n}") for n in range(50_000))
    # Binomial(50000, 0.1): the standard deviation is 0.13 points, so 9.5-10.5% is almost four of them.
    assert 0.095 < arms["split"] / 50_000 < 0.105
    routed = Counter(traffic.route(v1.model, key=f"device-{n}").version.version for n in range(300))
    assert routed[2] == sum(1 for n in range(300) if traffic.choose_arm("keywords", "production", 10, f"device-{n}") == "split")
    assert set(routed) == {1, 2}


def test_requests_without_a_key_are_split_at_random_in_proportion():
    traffic._random.seed(7)
    arms = Counter(traffic.choose_arm("keywords", "production", 25) for _ in range(40_000))
    assert 0.24 < arms["split"] / 40_000 < 0.26


def test_a_caller_key_always_meets_the_same_version_and_raising_the_share_keeps_it_there():
    first = {n: traffic.choose_arm("keywords", "production", 10, f"device-{n}") for n in range(10_000)}
    assert all(traffic.choose_arm("keywords", "production", 10, f"device-{n}") == first[n] for n in range(10_000))
    after = {n: traffic.choose_arm("keywords", "production", 30, f"device-{n}") for n in range(10_000)}
    assert all(after[n] == "split" for n in first if first[n] == "split")  # callers on the split stay there
    assert 0.28 < sum(1 for arm in after.values() if arm == "split") / 10_000 < 0.32
    # Another alias (or model) shuffles callers independently: a caller is not on every canary at once.
    other = {n: traffic.choose_arm("keywords", "staging", 10, f"device-{n}") for n in range(10_000)}
    both = sum(1 for n in first if first[n] == other[n] == "split")
    assert both < 200  # about 1% (100) of callers are on both 10% splits


def test_predictions_through_the_api_say_which_version_answered_and_keep_a_caller_on_it(api, versions):
    v1, v2, _ = versions
    Alias.point(v1.model, "production", v1, split=(v2, 50))
    answered = {}
    for n in range(24):
        response = api.post("/api/models/keywords/predict", {"files": [wav_upload()], "key": f"kiosk-{n}"})
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["arm"] == ("split" if body["version"] == 2 else "primary")
        assert body["results"][0]["version"] == body["version"]
        answered[n] = body["version"]
    assert set(answered.values()) == {1, 2}  # 24 callers on a 50% split: all on one side has odds 2^-23
    for n in (0, 1, 2, 3):
        again = api.post("/api/models/keywords/predict", {"files": [wav_upload()], "key": f"kiosk-{n}"}).json()
        assert again["version"] == answered[n]
    logged = PredictionLog.objects.filter(caller_key="kiosk-0")
    assert {row.version_number for row in logged} == {answered[0]}
    assert logged.count() == 2


def test_a_named_version_ignores_the_split(api, versions):
    v1, v2, _ = versions
    Alias.point(v1.model, "production", v1, split=(v2, 99))
    body = api.post("/api/models/keywords/predict", {"files": [wav_upload()], "ref": "v1", "key": "a"}).json()
    assert (body["version"], body["arm"], body["ref"]) == (1, "direct", "v1")


def test_split_and_shadow_through_the_api_are_kept_in_the_alias_history_and_audited(api, versions):
    v1, v2, v3 = versions
    response = _put(api, "production", {"version": 1, "note": "first"})
    assert response.status_code == 200, response.content
    response = _put(api, "production", {"split": {"version": "v2", "percent": 10}, "shadow": 3, "note": "canary"})
    assert response.status_code == 200, response.content
    assert response.json() | {"updated_at": None} == {
        "name": "production", "version": 1, "percent": 90, "split": {"version": 2, "percent": 10}, "shadow": 3,
        "updated_at": None, "rollback_to": None,
    }
    listed = api.get("/api/models/keywords/aliases").json()[0]
    assert (listed["split"], listed["shadow"]) == ({"version": 2, "percent": 10}, 3)
    history = api.get("/api/models/keywords/aliases/production/history").json()["items"]
    assert history[0]["action"] == "traffic" and history[0]["note"] == "canary"
    assert history[0]["traffic"] == {"before": {"split": None, "shadow": None},
                                     "after": {"split": {"version": 2, "percent": 10}, "shadow": 3}}
    event = AuditEvent.objects.filter(action="alias.traffic").get()
    assert event.changes == {"split": [None, {"version": 2, "percent": 10}], "shadow": [None, 3]}
    assert event.actor.username == "admin-persona"

    response = _put(api, "production", {"split": None, "note": "canary done"})
    assert (response.json()["split"], response.json()["shadow"], response.json()["percent"]) == (None, 3, 100)


@pytest.mark.parametrize("body, field", [
    ({"split": {"version": 1, "percent": 10}}, "split"),      # its own version
    ({"shadow": 1}, "shadow"),                                 # its own version
    ({"split": {"version": 2, "percent": 10}, "shadow": 2}, "shadow"),  # a version that already answers
])
def test_a_split_or_shadow_of_a_version_that_already_answers_is_refused(api, versions, body, field):
    _put(api, "production", {"version": 1})
    response = _put(api, "production", body)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field
    assert Alias.objects.get(name="production").traffic() == {"split": None, "shadow": None}


@pytest.mark.parametrize("percent", [0, 100, 150])
def test_a_share_outside_1_to_99_is_refused(api, versions, percent):
    _put(api, "production", {"version": 1})
    response = _put(api, "production", {"split": {"version": 2, "percent": percent}})
    assert response.status_code == 422


def test_a_new_alias_needs_a_version(api, versions):
    response = _put(api, "canary", {"shadow": 2})
    assert response.status_code == 422
    assert response.json()["field"] == "version"


def test_promoting_the_split_version_ends_the_split_and_rollback_skips_traffic_changes(versions):
    v1, v2, v3 = versions
    model = v1.model
    Alias.point(model, "production", v1)
    Alias.point(model, "production", None, split=(v2, 10), shadow=v3)
    alias = Alias.point(model, "production", v2, note="canary was good")
    assert alias.traffic() == {"split": None, "shadow": 3}
    assert model.alias_history("production").first().traffic["after"] == {"split": None, "shadow": 3}
    alias = Alias.objects.get(pk=alias.pk).rollback()
    assert alias.version == v1
    with pytest.raises(NothingToRollBack):  # the traffic change moved nothing to roll back to
        Alias.objects.get(pk=alias.pk).rollback()


def test_a_version_taking_split_or_shadow_traffic_cannot_be_deleted_or_archived(versions):
    v1, v2, v3 = versions
    Alias.point(v1.model, "production", v1, split=(v2, 5), shadow=v3)
    for version, use in ((v2, "production (5% split)"), (v3, "production (shadow)")):
        with pytest.raises(VersionAliased) as refused:
            version.remove()
        assert use in refused.value.detail
        with pytest.raises(VersionAliased):
            version.update({"status": "archived"})
    Alias.point(v1.model, "production", None, split=None, shadow=None)
    v3.remove()
    assert not v1.model.versions.filter(pk=v3.pk).exists()


def test_nothing_changed_records_nothing(versions):
    v1, v2, _ = versions
    Alias.point(v1.model, "production", v1, split=(v2, 10))
    count = v1.model.alias_events.count()
    Alias.point(v1.model, "production", v1, split=(v2, 10), shadow=KEEP)
    Alias.point(v1.model, "production", None)
    assert v1.model.alias_events.count() == count


@pytest.mark.django_db(transaction=True)
def test_the_shadow_scores_off_the_request_path_and_its_answer_is_only_logged(api, versions):
    v1, v2, v3 = versions
    Alias.point(v1.model, "production", v1, shadow=v3)
    release = threading.Event()
    traffic.shadow_pool.submit(release.wait, 30)  # occupy the shadow thread: nothing shadowed can run yet
    try:
        response = api.post("/api/models/keywords/predict", {"files": [wav_upload()], "key": "lobby"})
        assert response.status_code == 200, response.content
        body = response.json()
        # The answer came back while the shadow had not run at all: it is not on the request's path.
        assert (body["version"], body["shadow_version"]) == (1, 3)
        assert not PredictionLog.objects.filter(role="shadow").exists()
        assert traffic.shadow_pool.pending() == 2
    finally:
        release.set()
    traffic.shadow_pool.drain()
    primary = PredictionLog.objects.get(pk=body["results"][0]["prediction_id"])
    shadow = PredictionLog.objects.get(role="shadow")
    assert (primary.version_number, primary.role, primary.arm) == (1, "primary", "primary")
    assert (shadow.version_number, shadow.primary_id, shadow.arm, shadow.caller_key) == (3, primary.pk, "shadow", "lobby")
    assert shadow.answer == primary.answer == body["results"][0]["label"]


@pytest.mark.django_db(transaction=True)
def test_a_full_shadow_queue_drops_shadow_work_instead_of_growing(api, versions, settings):
    v1, _, v3 = versions
    settings.SHADOW_QUEUE_SIZE = 0
    Alias.point(v1.model, "production", v1, shadow=v3)
    release = threading.Event()
    traffic.shadow_pool.submit(release.wait, 30)
    dropped = traffic.shadow_pool.dropped
    try:
        assert api.post("/api/models/keywords/predict", {"files": [wav_upload()]}).status_code == 200
    finally:
        release.set()
    traffic.shadow_pool.drain()
    assert traffic.shadow_pool.dropped == dropped + 1
    assert not PredictionLog.objects.filter(role="shadow").exists()


def test_the_alias_command_shows_and_changes_the_traffic(versions, capsys):
    v1, _, _ = versions
    Alias.point(v1.model, "production", v1)
    call_command("alias", "keywords@production", "--split", "2:10", "--shadow", "v3", "--note", "from the shell")
    shown = json.loads(capsys.readouterr().out.splitlines()[0])
    assert shown == {"model": "keywords", "alias": "production", "version": 1, "percent": 90,
                     "split": {"version": 2, "percent": 10}, "shadow": 3}
    event = v1.model.alias_history("production").first()
    assert (event.action, event.note) == ("traffic", "from the shell")
    assert AuditEvent.objects.get(action="alias.traffic").changes["via"] == [None, "manage.py alias"]
    call_command("alias", "keywords@production", "--no-split", "--no-shadow")
    assert Alias.objects.get(name="production").traffic() == {"split": None, "shadow": None}


def test_the_predict_command_takes_a_key_and_logs_its_answers(versions, tmp_path, capsys):
    from tests.audio import tone, write_wav

    v1, v2, _ = versions
    Alias.point(v1.model, "production", v1, split=(v2, 50))
    path = write_wav(tmp_path / "door.wav", tone(2400.0, 0.5))
    expected = traffic.choose_arm("keywords", "production", 50, "door-sensor")
    call_command("predict", "keywords", str(path), "--key", "door-sensor")
    line = json.loads(capsys.readouterr().out)
    assert line["arm"] == expected and line["version"] == (2 if expected == "split" else 1)
    row = PredictionLog.objects.get(pk=line["prediction_id"])
    assert (row.channel, row.caller_key, row.version_number) == ("cli", "door-sensor", line["version"])
