from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from audioml.audit import Actor, record
from audioml.models import ApiToken, AuditEvent


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("user", "prefix", "token_hash", "created_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A token's value is shown once at creation; create tokens in the panel or the API.
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        actor = Actor.from_request(request)
        for token in queryset:
            token.revoke(by=actor)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changed = {field: [form.initial.get(field), form.cleaned_data.get(field)] for field in form.changed_data}
        if changed:
            action = "token.revoke" if "revoked_at" in changed and obj.revoked_at else "token.update"
            record(action, obj, by=Actor.from_request(request), changes={k: [str(v) if v is not None else None for v in pair] for k, pair in changed.items()})

    def delete_model(self, request, obj):
        record("token.delete", obj, by=Actor.from_request(request), changes={"user": [obj.user.get_username(), None]})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for token in queryset:
            self.delete_model(request, token)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_name", "action", "object_type", "object_repr", "ip_address")
    list_filter = ("action", "object_type")
    search_fields = ("actor_name", "action", "object_repr", "object_id", "request_id")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


User = get_user_model()
ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser")


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, with changes to access (active, staff, superuser, roles and permissions) audited."""

    def save_model(self, request, obj, form, change):
        before = {field: form.initial.get(field) for field in ACCESS_FIELDS} if change else {}
        super().save_model(request, obj, form, change)
        changes = {field: [before.get(field), getattr(obj, field)] for field in ACCESS_FIELDS
                   if field in form.changed_data}
        if not change:
            record("user.create", obj, by=Actor.from_request(request), changes={field: [None, getattr(obj, field)] for field in ACCESS_FIELDS})
        elif changes:
            record("user.update", obj, by=Actor.from_request(request), changes=changes)

    def save_related(self, request, form, formsets, change):
        user = form.instance
        before = _access_of(user) if change else ([], [])
        super().save_related(request, form, formsets, change)
        after = _access_of(user)
        changes = {}
        if after[0] != before[0]:
            changes["groups"] = [before[0], after[0]]
        if after[1] != before[1]:
            changes["permissions"] = [before[1], after[1]]
        if changes:
            record("user.roles", user, by=Actor.from_request(request), changes=changes)

    def delete_model(self, request, obj):
        record("user.delete", obj, by=Actor.from_request(request))
        super().delete_model(request, obj)


def _access_of(user) -> tuple[list[str], list[str]]:
    groups = sorted(user.groups.values_list("name", flat=True))
    permissions = sorted(f"{app}.{codename}" for app, codename in
                         user.user_permissions.values_list("content_type__app_label", "codename"))
    return groups, permissions


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
