"""The audit trail: one call from every place that changes something that matters."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audioml.middleware import current_request_id
from audioml.models import AuditEvent


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # REMOTE_ADDR is what reached us; a trusted proxy in front should set it (gunicorn --forwarded-allow-ips).
    return request.META.get("REMOTE_ADDR") or None


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields whose values differ."""
    return {field: [before.get(field), after.get(field)] for field in after if before.get(field) != after.get(field)}


def record(
    action: str,
    obj: Any = None,
    *,
    request: HttpRequest | None = None,
    user=None,
    changes: dict | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
) -> AuditEvent:
    actor = user if user is not None else getattr(request, "user", None)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:255]
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:255],
        changes=changes or {},
        ip_address=client_ip(request),
        request_id=current_request_id() if request is not None else "",
    )


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs):
    record("user.login", user, request=request, user=user)


@receiver(user_login_failed)
def _audit_failed_login(sender, credentials, request=None, **kwargs):
    record(
        "user.login_failed", request=request, object_type="auth.user",
        object_repr=str(credentials.get("username", ""))[:150],
    )
