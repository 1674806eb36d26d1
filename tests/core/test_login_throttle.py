"""Failed logins are throttled per account (short, capped waits) and per address (a long lock), on the panel's
and Django admin's login pages; `ensure_admin` refuses a weak ADMIN_PASSWORD."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audioml import login_throttle
from tests.factories import AdminFactory

PASSWORD = "a-long-and-unusual-passphrase"


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, moved by the test instead of sleeping."""
    state = {"now": 1_000_000.0}
    monkeypatch.setattr(login_throttle, "now", lambda: state["now"])

    def advance(seconds: float) -> None:
        state["now"] += seconds

    return advance


@pytest.fixture
def owner(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast checks, same logic
    user = AdminFactory(username="admin")
    user.set_password(PASSWORD)
    user.save()
    return user


def attempt(password: str, username: str = "admin", address: str = "203.0.113.9", url: str = "/login/"):
    return Client(REMOTE_ADDR=address).post(url, {"username": username, "password": password})


def test_repeated_wrong_passwords_lock_the_account_briefly_with_a_clear_message(owner, clock):
    for _ in range(5):
        response = attempt("wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
    refused = attempt(PASSWORD)  # even the right password waits while the account is locked
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "Too many failed logins for this account" in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session
    clock(3)
    assert attempt(PASSWORD).status_code == 302


def test_the_account_wait_doubles_but_is_capped_so_the_owner_is_never_locked_out_for_long(owner, clock, settings):
    waits = []
    for _ in range(40):  # an attacker from many addresses trying as fast as the throttle lets them
        address = f"198.51.100.{len(waits)}"
        response = attempt("wrong", address=address)
        if response.status_code == 429:
            waits.append(int(response["Retry-After"]))
            clock(waits[-1])
    assert waits == sorted(waits) and waits[-1] <= settings.LOGIN_ACCOUNT_LOCK_MAX_SECONDS
    assert waits[-1] == settings.LOGIN_ACCOUNT_LOCK_MAX_SECONDS
    clock(settings.LOGIN_ACCOUNT_LOCK_MAX_SECONDS)
    assert attempt(PASSWORD, address="192.0.2.1").status_code == 302  # the owner, from their own address


def test_an_address_that_keeps_failing_is_locked_longer_than_any_account(owner, clock, settings):
    for number in range(settings.LOGIN_ADDRESS_FAILURES):
        attempt("wrong", username=f"guess-{number}")
    refused = attempt(PASSWORD)
    assert refused.status_code == 429
    assert "from your address" in refused.content.decode()
    clock(settings.LOGIN_ACCOUNT_LOCK_MAX_SECONDS + 1)
    assert attempt(PASSWORD).status_code == 429  # still locked: the address lock is the stronger one
    assert attempt(PASSWORD, address="192.0.2.1").status_code == 302  # the real admin elsewhere gets in
    clock(settings.LOGIN_ADDRESS_LOCK_SECONDS)
    assert attempt(PASSWORD).status_code == 302


def test_admin_login_is_throttled_too(owner, clock):
    for _ in range(5):
        attempt("wrong", url="/admin/login/")
    refused = attempt(PASSWORD, url="/admin/login/")
    assert "Too many failed logins for this account" in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session


def test_a_successful_login_clears_the_account_failures(owner, clock):
    for _ in range(4):
        attempt("wrong")
    assert attempt(PASSWORD).status_code == 302
    for _ in range(4):
        attempt("wrong")
    assert attempt(PASSWORD).status_code == 302


def test_ensure_admin_refuses_a_weak_admin_password(db, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("ADMIN_PASSWORD", "password")
    with pytest.raises(CommandError, match="ADMIN_PASSWORD is not accepted: .*too common"):
        call_command("ensure_admin", username="boss")
    assert not get_user_model().objects.filter(username="boss").exists()
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    call_command("ensure_admin", username="boss")
    assert get_user_model().objects.get(username="boss").check_password(PASSWORD)


def test_behind_a_proxy_the_configured_header_tells_guessers_apart(owner, clock, settings):
    """Every request comes from the proxy's address; without CLIENT_ADDRESS_HEADER one guesser would lock all out."""
    settings.CLIENT_ADDRESS_HEADER = "X-Real-IP"

    def via_proxy(password: str, client: str):
        return Client(REMOTE_ADDR="10.0.0.1", headers={"X-Real-IP": client}).post(
            "/login/", {"username": "someone", "password": password}
        )

    for _ in range(settings.LOGIN_ADDRESS_FAILURES):
        via_proxy("wrong", "203.0.113.50")
    assert via_proxy("wrong", "203.0.113.50").status_code == 429
    response = Client(REMOTE_ADDR="10.0.0.1", headers={"X-Real-IP": "198.51.100.7"}).post(
        "/login/", {"username": "admin", "password": PASSWORD}
    )
    assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_wrong_passwords_sent_at_the_same_moment_from_many_threads_are_all_counted():
    """Each failure is its own row: a read-modify-write of a shared list would lose failures that race."""
    import threading

    from django.db import connection

    threads, each = 6, 5
    start = threading.Barrier(threads)

    def guess() -> None:
        try:
            start.wait()
            for _ in range(each):
                login_throttle.record_failure("admin", "198.51.100.7")
        finally:
            connection.close()

    workers = [threading.Thread(target=guess) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(login_throttle._recent(login_throttle._account_key("admin"))) == threads * each
    assert len(login_throttle._recent(login_throttle._address_key("198.51.100.7"))) == threads * each
    assert login_throttle.refusal("admin", "198.51.100.7") is not None
