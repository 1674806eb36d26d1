"""Failed-login throttling for the panel's and Django admin's login forms.

Two counters, each the recent failure times of one key. A failure is one inserted `LoginFailure` row (never a
read-modify-write of a shared list), so concurrent wrong passwords in several web processes are all counted:

- per account (the user name, from any address): after LOGIN_ACCOUNT_FAILURES failures the next attempt
  must wait LOGIN_ACCOUNT_LOCK_SECONDS, doubling with every further failure up to LOGIN_ACCOUNT_LOCK_MAX_SECONDS.
  The wait is short and capped on purpose: an attacker can slow the real owner down, never lock them out for
  longer than that cap after their own last attempt. A successful login clears it.
- per address (REMOTE_ADDR, any account): after LOGIN_ADDRESS_FAILURES failures that address may not try
  again for LOGIN_ADDRESS_LOCK_SECONDS. Stronger, because it only ever locks out the guesser.

Attempts refused while locked are not checked against the password and do not count as failures.
Failures older than LOGIN_THROTTLE_WINDOW_SECONDS are forgotten.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings


def now() -> float:
    return time.time()


def _account_key(username: str) -> str:
    digest = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    return f"audioml:login-failures:account:{digest}"


def _address_key(address: str | None) -> str:
    return f"audioml:login-failures:address:{address or 'unknown'}"


KEEP = 200  # failures looked at per key: far past every threshold


def _recent(key: str) -> list[float]:
    """The key's failure times inside the window, oldest first."""
    from audioml.models import LoginFailure

    cutoff = now() - settings.LOGIN_THROTTLE_WINDOW_SECONDS
    moments = LoginFailure.objects.filter(key=key, at__gt=cutoff).order_by("-at").values_list("at", flat=True)
    return sorted(moments[:KEEP])


def _account_wait(failures: list[float]) -> float:
    over = len(failures) - settings.LOGIN_ACCOUNT_FAILURES
    if over < 0:
        return 0.0
    lock = min(settings.LOGIN_ACCOUNT_LOCK_MAX_SECONDS, settings.LOGIN_ACCOUNT_LOCK_SECONDS * 2 ** min(over, 30))
    return max(0.0, failures[-1] + lock - now())


def _address_wait(failures: list[float]) -> float:
    if len(failures) < settings.LOGIN_ADDRESS_FAILURES:
        return 0.0
    return max(0.0, failures[-1] + settings.LOGIN_ADDRESS_LOCK_SECONDS - now())


@dataclass(frozen=True)
class Refusal:
    seconds: int
    reason: str

    @property
    def message(self) -> str:
        wait = f"{self.seconds} second{'s' * (self.seconds != 1)}"
        if self.seconds >= 120:
            wait = f"{math.ceil(self.seconds / 60)} minutes"
        return f"Too many failed logins {self.reason}. Try again in {wait}."


def refusal(username: str, address: str | None) -> Refusal | None:
    """Why a login attempt must wait, or None when it may be checked."""
    address_wait = _address_wait(_recent(_address_key(address)))
    if address_wait > 0:
        return Refusal(math.ceil(address_wait), "from your address")
    account_wait = _account_wait(_recent(_account_key(username))) if username else 0.0
    if account_wait > 0:
        return Refusal(math.ceil(account_wait), "for this account")
    return None


def record_failure(username: str, address: str | None) -> None:
    """Count one failure for the account and one for the address, and forget failures too old to matter."""
    from audioml.models import LoginFailure

    moment = now()
    LoginFailure.objects.bulk_create(
        [LoginFailure(key=_account_key(username), at=moment), LoginFailure(key=_address_key(address), at=moment)]
    )
    forgotten = moment - settings.LOGIN_THROTTLE_WINDOW_SECONDS - settings.LOGIN_ADDRESS_LOCK_SECONDS
    LoginFailure.objects.filter(at__lt=forgotten).delete()


def record_success(username: str) -> None:
    """The account's owner got in: forget its failures (not the address's, which a guesser could clear)."""
    from audioml.models import LoginFailure

    LoginFailure.objects.filter(key=_account_key(username)).delete()
