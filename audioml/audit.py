"""The audit trail. Domain methods (`Dataset.remove(by)`, `Alias.point(..., by)`, `job.cancel(by)`, …) record
their own event inside their transaction; callers only say who acts, with an `Actor` built once per request
or command. Django admin's user/group hooks and the login signals below are the only other writers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audioml.middleware import current_request_id
from audioml.models import AuditEvent


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address: REMOTE_ADDR, or behind a reverse proxy the header it sets (CLIENT_ADDRESS_HEADER,
    e.g. X-Real-IP; of a list such as X-Forwarded-For the last entry, the one the proxy itself appended)."""
    if request is None:
        return None
    from django.conf import settings

    if settings.CLIENT_ADDRESS_HEADER:
        forwarded = request.headers.get(settings.CLIENT_ADDRESS_HEADER, "").split(",")[-1].strip()
        if forwarded:
            return forwarded[:45]
    return request.META.get("REMOTE_ADDR") or None


def _signed_in(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


@dataclass(frozen=True)
class Actor:
    """Who makes a change and from where: the signed-in user (None for the system), the client address and
    request id of a web request, or the management command (`via`) that acts."""

    user: Any = None
    ip_address: str | None = None
    request_id: str = ""
    via: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest | None) -> Actor:
        if request is None:
            return cls()
        user = getattr(request, "user", None)
        return cls(user=user if _signed_in(user) else None, ip_address=client_ip(request),
                   request_id=current_request_id())

    @classmethod
    def for_command(cls, command: str, user=None) -> Actor:
        return cls(user=user if _signed_in(user) else None, via=command)

    @classmethod
    def of(cls, by) -> Actor | None:
        """`by` as domain methods accept it: an Actor, a user (a shell or a test acting as them), or None for a
        change nobody asked for (test set-up, data migrations), which is not audited."""
        if by is None or isinstance(by, Actor):
            return by
        return cls(user=by if _signed_in(by) else None)

    def __str__(self) -> str:
        return str(self.user) if self.user is not None else "the system"


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields whose values differ."""
    return {field: [before.get(field), after.get(field)] for field in after if before.get(field) != after.get(field)}


def record(
    action: str,
    obj: Any = None,
    *,
    by: Actor | None = None,
    user=None,
    changes: dict | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
) -> AuditEvent:
    """Write one event. `by` says who acted (`user=` is short for `by=Actor(user=user)`); a command's name is
    added to the changes as `via`."""
    actor = by if by is not None else Actor(user=user if _signed_in(user) else None)
    changes = dict(changes or {})
    if actor.via:
        changes.setdefault("via", [None, actor.via])
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:255]
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_name=actor.user.get_username() if actor.user is not None else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:255],
        changes=changes,
        ip_address=actor.ip_address,
        request_id=actor.request_id,
    )


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs):
    record("user.login", user, by=replace(Actor.from_request(request), user=user))


@receiver(user_login_failed)
def _audit_failed_login(sender, credentials, request=None, **kwargs):
    record(
        "user.login_failed", by=Actor.from_request(request), object_type="auth.user",
        object_repr=str(credentials.get("username", ""))[:150],
    )


def object_type_name(object_type: str) -> str:
    """A recorded object type ("registry_app.modelversion") as its model class's name in words ("model version",
    "training job"); a type that names no installed model ("storage") as it is."""
    import re

    from django.apps import apps

    app_label, _, model_name = object_type.partition(".")
    if not model_name:
        return object_type
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        return object_type
    return re.sub(r"(?<!^)(?=[A-Z])", " ", model.__name__).lower()

