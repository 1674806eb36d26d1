from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “nightly import script”.")
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional. Leave empty for a token that lasts until revoked.",
    )


class StorageCleanupForm(forms.Form):
    """Confirms removing what the dry run on the Storage page showed (`shown`: how many files it listed)."""

    confirm = forms.BooleanField(
        label="Delete these files for good", error_messages={"required": "Tick the box to confirm: the files are "
                                                                        "deleted for good."})
    shown = forms.IntegerField(min_value=0, widget=forms.HiddenInput, required=False)


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, label="User")
    action = forms.CharField(required=False, help_text="e.g. clip.edit, alias.move")
    object_type = forms.CharField(required=False, label="Object type",
                                  help_text="e.g. model version, or as recorded: registry_app.modelversion")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(required=False, label="Text", help_text="Object name or id")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            raise forms.ValidationError("“Since” must be on or before “until”.")
        return cleaned

    def filter(self, events):
        data = self.cleaned_data
        if data["actor"]:
            events = events.filter(actor_name__icontains=data["actor"])
        if data["action"]:
            events = events.filter(action__startswith=data["action"])
        if data["object_type"]:
            # The readable name the page shows ("model version") or the recorded type ("registry_app.modelversion").
            from django.db.models import Q

            from audioml.audit import object_type_name

            wanted = data["object_type"].strip().lower()
            named = [recorded for recorded in events.values_list("object_type", flat=True).distinct().order_by()
                     if wanted in object_type_name(recorded).lower()]
            events = events.filter(Q(object_type__icontains=wanted) | Q(object_type__in=named))
        if data["since"]:
            events = events.filter(created_at__date__gte=data["since"])
        if data["until"]:
            events = events.filter(created_at__date__lte=data["until"])
        if data["q"]:
            from django.db.models import Q

            events = events.filter(Q(object_repr__icontains=data["q"]) | Q(object_id=data["q"]))
        return events


class ThrottledLoginMixin:
    """Refuse logins while the account or the address is throttled (audioml/login_throttle.py), with a message
    that says so, and count failed attempts. Used by the panel's and Django admin's login forms."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "%(message)s",
    }

    def clean(self):
        from audioml import login_throttle
        from audioml.audit import client_ip

        username = self.cleaned_data.get("username") or ""
        address = client_ip(self.request)
        refused = login_throttle.refusal(username, address)
        if refused is not None:
            self.throttled = refused
            raise forms.ValidationError(
                self.error_messages["throttled"], code="throttled", params={"message": refused.message}
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if self.cleaned_data.get("password"):
                login_throttle.record_failure(username, address)
            raise error
        login_throttle.record_success(username)
        return cleaned


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
