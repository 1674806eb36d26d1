"""Bounds on the work predictions may ask of the web processes, so that no user can starve the panel or the
probes: each process scores at most PREDICT_WORKERS requests at a time (the others get 503 at once instead of
holding a web thread while they wait), and each user has at most PREDICT_MAX_CONCURRENT_PER_USER predictions
running across all processes (429). The per-user slots live in the shared cache (the database), so they hold
across gunicorn workers; a slot of a process that died expires after PREDICT_SLOT_SECONDS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache

from audioml.errors import ServerBusy, TooManyRequests
from audioml.middleware import current_request_id

PREDICT_SLOT_SECONDS = 600  # longer than gunicorn's --timeout: a slot outlives no request it belongs to

_process_slots: dict[int, threading.BoundedSemaphore] = {}
_process_slots_lock = threading.Lock()


def _process_semaphore() -> threading.BoundedSemaphore:
    size = settings.PREDICT_WORKERS
    with _process_slots_lock:
        return _process_slots.setdefault(size, threading.BoundedSemaphore(size))


def _user_slot_keys(user) -> list[str]:
    return [f"audioml:predict-slot:{user.pk}:{index}" for index in range(settings.PREDICT_MAX_CONCURRENT_PER_USER)]


def _take_user_slot(user) -> str:
    for key in _user_slot_keys(user):
        if cache.add(key, current_request_id(), timeout=PREDICT_SLOT_SECONDS):
            return key
    limit = settings.PREDICT_MAX_CONCURRENT_PER_USER
    raise TooManyRequests(
        f"You already have {limit} prediction{'s' * (limit != 1)} running, the most one user may run at once "
        "(PREDICT_MAX_CONCURRENT_PER_USER); wait for one to finish and send this request again.",
        retry_after=5,
    )


@contextmanager
def prediction_slot(user) -> Iterator[None]:
    """Hold one of this process's prediction slots and one of the user's, or refuse at once (503 or 429)."""
    process_slots = _process_semaphore()
    if not process_slots.acquire(blocking=False):
        raise ServerBusy(
            "Every prediction slot of this server process is busy (PREDICT_WORKERS); send the request again in "
            "a few seconds.",
            retry_after=5,
        )
    try:
        key = _take_user_slot(user)
        try:
            yield
        finally:
            cache.delete(key)
    finally:
        process_slots.release()
