"""Which version answers a request (an alias's split, sticky per caller key), and the shadow versions that score
the same audio in the background.

**Split.** A request names an alias (or none: `production`). When the alias splits its traffic, the caller's
`key` (a device id, a user id: anything stable) is hashed with the model and alias names into one of 10,000
buckets; buckets below `split_percent` × 100 go to the split version. The same key therefore always meets the
same version while the split stays, and raising the share only moves more buckets over (a caller already on the
split version stays there). A request without a key is assigned at random, request by request.

**Shadow.** The shadow version's answer is never returned. Its scoring runs on a small thread pool of the web
process (`SHADOW_WORKERS` threads, at most `SHADOW_QUEUE_SIZE` requests waiting; more are dropped and counted),
after the response's own prediction is logged. Why a thread pool rather than a django-q2 task: the decoded audio
is already in this process's memory and the shadow model in its model cache, so nothing has to be written to
the storage (the log keeps no audio unless a model asks for it) or loaded a second time by a worker, and the
request never waits on the broker. What is lost when a web process stops mid-way is a few shadow answers, which
the comparison only samples anyway.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections

from registry_app.models import DEFAULT_ALIAS, ModelVersion, RegisteredModel, parse_version_ref

logger = logging.getLogger(__name__)

BUCKETS = 10_000
MAX_KEY_LENGTH = 200
_random = random.Random()


@dataclass
class Route:
    """The version that answers, how it was chosen, and the version that shadows it (if any)."""

    version: ModelVersion
    ref: str  # the alias name, vN, or "latest"
    arm: str  # "primary" or "split" (through an alias), "direct" (a version was named), "latest"
    shadow: ModelVersion | None = None
    key: str = ""


def bucket(model_name: str, alias_name: str, key: str) -> int:
    """The caller's bucket (0-9999) for one alias: the same key always lands in the same one."""
    digest = hashlib.sha256(f"{model_name}\x00{alias_name}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def clean_key(key: str | None) -> str:
    key = (key or "").strip()
    if len(key) > MAX_KEY_LENGTH:
        from audioml.errors import Unprocessable

        raise Unprocessable(f"key: at most {MAX_KEY_LENGTH} characters", field="key")
    return key


def route(model: RegisteredModel, ref: str | None = None, key: str | None = None) -> Route:
    """Resolve `ref` like RegisteredModel.resolve, then apply the alias's split and shadow."""
    key = clean_key(key)
    ref = (ref or "").strip()
    if ref and parse_version_ref(ref) is not None:
        version, used = model.resolve(ref)
        return Route(version=version, ref=used, arm="direct", key=key)
    alias = (model.aliases.select_related("version", "split_version", "shadow_version")
             .filter(name=(ref or DEFAULT_ALIAS).lower()).first())
    if alias is None:
        version, used = model.resolve(ref)  # 404 for an unknown alias; the latest version without production
        return Route(version=version, ref=used, arm="latest" if used == "latest" else "direct", key=key)
    arm = choose_arm(model.name, alias.name, alias.split_percent if alias.split_version_id else 0, key)
    version = alias.split_version if arm == "split" else alias.version
    return Route(version=version, ref=alias.name, arm=arm, shadow=alias.shadow_version, key=key)


def choose_arm(model_name: str, alias_name: str, split_percent: int, key: str = "") -> str:
    """"split" for the callers (or, without a key, the requests) that fall in the split's share, else "primary"."""
    if not split_percent:
        return "primary"
    position = bucket(model_name, alias_name, key) if key else _random.randrange(BUCKETS)
    return "split" if position < split_percent * (BUCKETS // 100) else "primary"


class ShadowPool:
    """A bounded background pool for shadow scoring: jobs beyond the queue's size are dropped, never queued
    without limit (a shadow must not grow the web process's memory when traffic outruns it)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._futures: set[Future] = set()
        self.dropped = 0
        self.done = 0

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=settings.SHADOW_WORKERS, thread_name_prefix="shadow")
            return self._executor

    def pending(self) -> int:
        with self._lock:
            return len(self._futures)

    def submit(self, function, *args) -> bool:
        """Run function(*args) in the background; False (and counted as dropped) when the queue is full."""
        executor = self._pool()
        with self._lock:
            if len(self._futures) >= settings.SHADOW_WORKERS + settings.SHADOW_QUEUE_SIZE:
                self.dropped += 1
                logger.warning("Shadow queue full (%d waiting): a shadow prediction was dropped", len(self._futures))
                return False
            future = executor.submit(_in_background, function, *args)
            self._futures.add(future)
        future.add_done_callback(self._finished)
        return True

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)
            self.done += 1

    def drain(self, timeout: float = 60.0) -> None:
        """Wait for every submitted job (tests; a graceful stop)."""
        from concurrent.futures import wait

        with self._lock:
            futures = list(self._futures)
        wait(futures, timeout=timeout)


def _in_background(function, *args) -> None:
    close_old_connections()
    try:
        function(*args)
    except Exception:  # a shadow failure must never surface anywhere but the log
        logger.exception("Shadow prediction failed")
    finally:
        close_old_connections()
        from django.db import connection

        connection.close()  # a pool thread's connection would otherwise outlive its job


shadow_pool = ShadowPool()
