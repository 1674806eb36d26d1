"""Aliases: promote, rollback through history, deletion, and how references resolve."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from registry_app.errors import NothingToRollBack, ReferenceNotFound, VersionAliased, VersionArchived
from registry_app.models import Alias, AliasEvent, ModelVersion
from tests.factories import StaffFactory


@pytest.fixture
def three_versions(register):
    return [register("keywords") for _ in range(3)]


def test_promote_creates_the_alias_and_records_who_and_why(three_versions):
    v1, v2, _ = three_versions
    user = StaffFactory(username="releaser")
    alias = Alias.point(v1.model, "production", v1, by=user, note="first release")
    Alias.point(alias.model, alias.name, v2, by=user, note="better accuracy")

    alias.refresh_from_db()
    assert alias.version == v2
    history = list(v1.model.alias_history("production"))
    assert [(e.action, e.from_number, e.to_number, e.note) for e in history] == [
        ("set", 1, 2, "better accuracy"),
        ("set", None, 1, "first release"),
    ]
    assert all(event.moved_by == user for event in history)


def test_pointing_an_alias_where_it_already_points_records_nothing(three_versions):
    v1 = three_versions[0]
    Alias.point(v1.model, "production", v1)
    Alias.point(v1.model, "production", v1)
    assert AliasEvent.objects.count() == 1


def test_rollback_returns_to_the_previous_version_and_keeps_going_back(three_versions):
    v1, v2, v3 = three_versions
    model = v1.model
    for version in three_versions:
        Alias.point(model, "production", version)
    alias = Alias.objects.get(model=model, name="production")

    assert alias.rollback(note="v3 misfires").version == v2
    assert Alias.objects.get(pk=alias.pk).rollback().version == v1
    with pytest.raises(NothingToRollBack):
        Alias.objects.get(pk=alias.pk).rollback()

    actions = [(e.action, e.from_number, e.to_number) for e in model.alias_history("production")]
    assert actions[:2] == [("rollback", 2, 1), ("rollback", 3, 2)]


def test_rollback_after_a_new_promotion_returns_to_the_version_before_it(three_versions):
    v1, v2, v3 = three_versions
    model = v1.model
    Alias.point(model, "production", v1)
    Alias.point(model, "production", v3)
    alias = Alias.objects.get(model=model, name="production").rollback()
    assert alias.version == v1
    Alias.point(model, "production", v2)
    assert Alias.objects.get(pk=alias.pk).rollback().version == v1


def test_rollback_skips_versions_deleted_since(three_versions):
    v1, v2, v3 = three_versions
    model = v1.model
    for version in three_versions:
        Alias.point(model, "production", version)
    v2.delete()
    assert Alias.objects.get(model=model, name="production").rollback().version == v1


def test_a_fresh_alias_has_nothing_to_roll_back_to(three_versions):
    alias = Alias.point(three_versions[0].model, "staging", three_versions[0])
    with pytest.raises(NothingToRollBack):
        alias.rollback()


def test_deleting_an_alias_keeps_its_history_and_frees_the_version(three_versions):
    v1 = three_versions[0]
    alias = Alias.point(v1.model, "staging", v1)
    alias.remove(note="retired")
    assert not Alias.objects.filter(name="staging").exists()
    event = v1.model.alias_history("staging").first()
    assert (event.action, event.from_number, event.to_number, event.note) == ("delete", 1, None, "retired")
    v1.delete()
    assert not ModelVersion.objects.filter(pk=v1.pk).exists()


@pytest.mark.parametrize("name", ["v3", "12", "has space", "-dash", "a/b", ""])
def test_alias_names_must_be_slugs_that_do_not_look_like_versions(three_versions, name):
    with pytest.raises(ValidationError):
        Alias.point(three_versions[0].model, name, three_versions[0])
    assert not Alias.objects.exists()


def test_alias_names_are_case_insensitive(three_versions):
    model = three_versions[0].model
    Alias.point(model, "Staging", three_versions[0])
    assert model.resolve("STAGING") == (three_versions[0], "staging")


def test_an_archived_version_cannot_be_promoted_or_archived_while_aliased(three_versions):
    v1, v2, _ = three_versions
    v2.status = ModelVersion.Status.ARCHIVED
    v2.save()
    with pytest.raises(VersionArchived):
        Alias.point(v1.model, "production", v2)
    Alias.point(v1.model, "production", v1)
    with pytest.raises(VersionAliased):
        v1.set_status(ModelVersion.Status.ARCHIVED)


def test_resolve_prefers_explicit_refs_then_production_then_latest_active(three_versions):
    v1, v2, v3 = three_versions
    model = v1.model
    assert model.resolve() == (v3, "latest")
    v3.status = ModelVersion.Status.ARCHIVED
    v3.save()
    assert model.resolve() == (v2, "latest")
    Alias.point(model, "production", v1)
    Alias.point(model, "staging", v2)
    assert model.resolve() == (v1, "production")
    assert model.resolve("staging") == (v2, "staging")
    assert model.resolve("v3") == (v3, "v3")
    assert model.resolve("2") == (v2, "v2")


@pytest.mark.parametrize("ref", ["v9", "canary"])
def test_unknown_references_are_not_found(three_versions, ref):
    with pytest.raises(ReferenceNotFound):
        three_versions[0].model.resolve(ref)


@pytest.mark.django_db(transaction=True)
def test_first_promotions_at_the_same_instant_all_land_in_the_history(trained_artifacts):
    import threading

    from django.db import connection, connections

    from tests.factories import TrainingJobFactory

    if connection.vendor != "postgresql":
        pytest.skip("row locks are only meaningful on PostgreSQL (SQLite serialises writers)")
    versions = [ModelVersion.objects.register_from_job(TrainingJobFactory(), trained_artifacts) for _ in range(6)]
    barrier = threading.Barrier(len(versions))
    errors = []

    def promote(version):
        try:
            barrier.wait()
            Alias.point(version.model, "production", version)
        except Exception as error:  # noqa: BLE001 - asserted below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=promote, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    alias = Alias.objects.get(name="production")
    events = list(AliasEvent.objects.order_by("id"))
    assert len(events) == len(versions)  # one creation, then every other promotion as a move
    assert events[0].from_number is None
    assert all(later.from_number == earlier.to_number for earlier, later in zip(events, events[1:]))
    assert alias.version.version == events[-1].to_number


def _replay(events: list[AliasEvent]) -> int | None:
    """The alias's version after its history, from nothing (None: it does not exist). Every event must start
    where the previous one left it: a deletion or a rollback of an alias that exists, a move from its version."""
    state = None
    for event in events:
        assert event.from_number == state, f"{event} does not follow from {state}"
        if event.action == AliasEvent.Action.DELETE:
            assert state is not None and event.to_number is None
            state = None
        else:
            assert event.action == AliasEvent.Action.SET or state is not None
            state = event.to_number
    return state


@pytest.mark.django_db(transaction=True)
def test_concurrent_delete_move_and_rollback_of_an_alias_never_fail_and_history_explains_the_state(
    trained_artifacts, api_token,
):
    import threading

    from django.db import connection, connections
    from django.test import Client

    from tests.factories import TrainingJobFactory

    if connection.vendor != "postgresql":
        pytest.skip("row locks are only meaningful on PostgreSQL (SQLite serialises writers)")
    for _ in range(3):
        ModelVersion.objects.register_from_job(TrainingJobFactory(model_name="racing"), trained_artifacts)
    url = "/api/models/racing/aliases/canary"
    statuses: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def run(barrier: threading.Barrier, name: str, send) -> None:
        client = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {api_token}"})
        try:
            barrier.wait()
            statuses.append((name, send(client).status_code))
        except BaseException as error:  # noqa: BLE001 - asserted below
            errors.append(error)
        finally:
            connections.close_all()

    operations = {
        "delete": lambda client: client.delete(url),
        "rollback": lambda client: client.post(f"{url}/rollback", {}, content_type="application/json"),
    }
    for trial in range(12):
        version = 1 + trial % 3
        moves = {
            f"put v{version}": lambda client, version=version: client.put(url, {"version": version}, content_type="application/json"),
            f"put v{1 + (trial + 1) % 3}": lambda client, version=1 + (trial + 1) % 3: client.put(
                url, {"version": version}, content_type="application/json"),
        }
        racers = {**operations, **moves}
        barrier = threading.Barrier(len(racers))
        threads = [threading.Thread(target=run, args=(barrier, name, send)) for name, send in racers.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        alias = Alias.objects.filter(model__name="racing", name="canary").select_related("version").first()
        events = list(AliasEvent.objects.filter(model__name="racing", alias_name="canary").order_by("id"))
        assert _replay(events) == (alias.version.version if alias else None), (trial, statuses[-4:])

    assert [status for status in statuses if status[1] >= 500] == []
    allowed = {"delete": {204, 404}, "rollback": {200, 404, 409}}
    assert all(code in allowed.get(name, {200}) for name, code in statuses), statuses
