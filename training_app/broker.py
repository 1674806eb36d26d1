"""The training cluster's queue as the broker holds it, for whichever django-q2 broker is configured.

Cancelling a queued job and recovering from a lost worker must see and edit the tasks waiting in the broker.
The two brokers keep them differently:

- ORM (the default): one `OrmQ` row per task. A cluster that pulls a task locks its row until `retry` (hours for
  training) and deletes it once the task returns, so a dead cluster's tasks stay in the table, locked.
- Redis (`Q_REDIS_URL`): a list per cluster, `django_q:<cluster>:q`. A cluster pops a task off the list (no
  receipt), so a dead cluster's tasks are gone; its jobs are still `queued` in the job table, which is where
  recovery finds them (`TrainingJob.objects.recover_queue`) and enqueues them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured

# django-q2 cluster that runs training tasks (Q_CLUSTER["ALT_CLUSTERS"]["training"]).
TRAINING_CLUSTER = "training"


@dataclass(frozen=True)
class QueuedTask:
    task_id: str
    held: bool  # pulled by a cluster that has not finished it (ORM: a locked row); never true on Redis


class OrmQueue:
    name = "orm"

    def __init__(self, broker) -> None:
        self.broker = broker

    def _rows(self):
        from django_q.models import OrmQ

        return OrmQ.objects.filter(key=self.broker.list_key)

    def tasks(self, now: datetime) -> list[QueuedTask]:
        return [QueuedTask(row.task_id(), bool(row.lock and row.lock > now)) for row in self._rows().order_by("id")]

    def remove(self, task_id: str) -> int:
        rows = [row.pk for row in self._rows() if row.task_id() == task_id]
        return self._rows().filter(pk__in=rows).delete()[0] if rows else 0

    def release_held(self, now: datetime) -> int:
        """Unlock tasks a cluster pulled, so that the next cluster's pusher takes them at once."""
        return self._rows().filter(lock__gt=now).update(lock=now)


class RedisQueue:
    name = "redis"

    def __init__(self, broker) -> None:
        self.broker = broker

    def _payloads(self) -> list[bytes]:
        return self.broker.connection.lrange(self.broker.list_key, 0, -1)

    @staticmethod
    def _task_id(payload: bytes) -> str | None:
        from django_q.signing import BadSignature, SignedPackage

        try:
            return SignedPackage.loads(payload)["id"]
        except (BadSignature, KeyError, TypeError):
            return None

    def tasks(self, now: datetime) -> list[QueuedTask]:
        ids = (self._task_id(payload) for payload in self._payloads())
        return [QueuedTask(task_id, False) for task_id in ids if task_id]

    def remove(self, task_id: str) -> int:
        removed = 0
        for payload in self._payloads():
            if self._task_id(payload) == task_id:
                removed += self.broker.connection.lrem(self.broker.list_key, 1, payload)
        return removed

    def release_held(self, now: datetime) -> int:
        return 0  # a pulled task has left Redis: recovery enqueues its job again instead


def training_queue() -> OrmQueue | RedisQueue:
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.brokers.redis_broker import Redis

    broker = get_broker(TRAINING_CLUSTER)
    if isinstance(broker, ORM):
        return OrmQueue(broker)
    if isinstance(broker, Redis):
        return RedisQueue(broker)
    raise ImproperlyConfigured(
        f"django-q2 broker {broker.__class__.__name__} is not supported: use the ORM (default) or Q_REDIS_URL"
    )
