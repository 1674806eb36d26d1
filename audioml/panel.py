"""Access rules for the panel: logged-in staff only. Anonymous users go to login, others get 403."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied


def staff_required(view):
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("The AudioML panel is for staff users.")
        return view(request, *args, **kwargs)

    wrapper.staff_only = True
    return wrapper
