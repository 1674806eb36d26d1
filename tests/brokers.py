"""The two django-q2 brokers the worker tests run on: the ORM (the default) and Redis.

Redis is the server at TEST_REDIS_URL (default: database 15 of 127.0.0.1:6379; a session running beside
another points it at a database of its own). The test command (scripts/test.sh) starts a private loopback
redis-server when none answers there. When Redis is unreachable the Redis tests fail: the issue makes the Redis
broker a supported set-up, not an optional one. The one exception is a run of the test command that found no
Redis and could start none (no redis-server installed): it says so in AUDIOML_TEST_REDIS_SKIP, and those tests
skip, each giving that reason (CI checks that Redis answers before it runs the test command, so it never skips
them). The tests use only the queue keys of the two clusters, emptied before and after each test.
"""

from __future__ import annotations

import os
import pydoc
from typing import Any

import redis
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage

from training_app.broker import TRAINING_CLUSTER

TEST_REDIS_URL = os.getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Set by scripts/test.sh only when it found no Redis and could start none: why the Redis tests skip.
SKIP_REASON = os.getenv("AUDIOML_TEST_REDIS_SKIP", "")
CLUSTERS = ("default", TRAINING_CLUSTER)


def redis_connection() -> redis.Redis:
    connection = redis.from_url(TEST_REDIS_URL, socket_connect_timeout=5)
    try:
        connection.ping()
    except redis.RedisError as error:
        if SKIP_REASON:
            import pytest

            pytest.skip(f"Redis broker test skipped: {SKIP_REASON}")
        raise AssertionError(
            f"Redis at {TEST_REDIS_URL} is unreachable ({error}); the Redis broker tests need it "
            "(run them with scripts/test.sh, which starts a redis-server when one is installed, start one, or "
            "point TEST_REDIS_URL at one)"
        ) from None
    return connection


class BrokerUnderTest:
    """One broker, configured for this process (django-q2's Conf) and for subprocesses (env())."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.redis = redis_connection() if name == "redis" else None

    def env(self) -> dict[str, str]:
        """What a subprocess (a real qcluster) needs in its environment to use this broker."""
        return {"Q_REDIS_URL": TEST_REDIS_URL} if self.redis else {}

    def configure(self, monkeypatch) -> None:
        if self.redis:
            monkeypatch.setattr(Conf, "ORM", None)
            monkeypatch.setattr(Conf, "REDIS", TEST_REDIS_URL)
            self.clear()

    def clear(self) -> None:
        if self.redis:
            self.redis.delete(*(f"django_q:{cluster}:q" for cluster in CLUSTERS))

    def pending(self) -> list[Any]:
        """Payloads of the training tasks waiting in the broker, oldest first (ORM: pulled ones too)."""
        if self.redis:
            return self.redis.lrange(f"django_q:{TRAINING_CLUSTER}:q", 0, -1)
        from django_q.models import OrmQ

        return [row.payload for row in OrmQ.objects.filter(key=TRAINING_CLUSTER).order_by("id")]

    def task_ids(self) -> list[str]:
        return [self.unpack(payload)["id"] for payload in self.pending()]

    @staticmethod
    def unpack(payload) -> dict[str, Any]:
        return SignedPackage.loads(payload)

    def pull(self) -> Any:
        """Take the next training task the way a cluster's pusher does: the ORM locks its row until `retry`,
        Redis pops it off the list (a cluster that dies now takes it with it)."""
        ((_, payload),) = get_broker(TRAINING_CLUSTER).dequeue()
        return payload

    def acknowledge(self, payload) -> None:
        """The task ran and left the broker: the ORM deletes its row once it returned, the Redis pusher popped it
        off the list before it ran."""
        if self.redis:
            self.redis.lrem(f"django_q:{TRAINING_CLUSTER}:q", 1, payload)
        else:
            from django_q.models import OrmQ

            OrmQ.objects.filter(key=TRAINING_CLUSTER, payload=payload).delete()

    def deliver(self, payload) -> Any:
        """Run a task the way a worker does: unpack it, look up its function, call it."""
        task = self.unpack(payload)
        return pydoc.locate(task["func"])(*task["args"], **task["kwargs"])
