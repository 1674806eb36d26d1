from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from registry_app.models import DEFAULT_ALIAS, ModelVersion, RegisteredModel, alias_name_validator
from training_app.templatetags.training_tags import metric_value


class ModelDescriptionForm(forms.ModelForm):
    class Meta:
        model = RegisteredModel
        fields = ["description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 6})}
        help_texts = {"description": "Markdown: what the model is for, where it runs, known limits."}


class VersionEditForm(forms.Form):
    """The only things about a version that may change."""

    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}), max_length=20000,
                                  help_text="Markdown")
    tags = forms.CharField(required=False, max_length=1000, help_text="Comma-separated, e.g. kiosk, beta")
    status = forms.ChoiceField(choices=ModelVersion.Status.choices,
                               help_text="Archived versions are not picked as the latest and cannot be promoted.")

    def __init__(self, *args, version: ModelVersion, **kwargs):
        self.version = version
        kwargs.setdefault(
            "initial",
            {"description": version.description, "tags": ", ".join(version.tags), "status": version.status},
        )
        super().__init__(*args, **kwargs)

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        if status == ModelVersion.Status.ARCHIVED and self.version.status != status and self.version.aliases.exists():
            names = ", ".join(self.version.aliases.values_list("name", flat=True))
            raise ValidationError(f"{names} points at this version: move the alias before archiving it.")
        return status


def version_choices(model: RegisteredModel, active_only: bool = False) -> list[tuple[str, str]]:
    versions = model.versions.order_by("-version")
    if active_only:
        versions = versions.filter(status=ModelVersion.Status.ACTIVE)
    choices = []
    for version in versions:
        headline = version.headline_metric()
        metric = f" · {headline[0]} {metric_value(headline[1], headline[0])}" if headline else ""
        choices.append((str(version.version), f"v{version.version}{metric}"))
    return choices


class PromoteForm(forms.Form):
    """Point an alias (new or existing) at a version; the note is kept in the alias history."""

    alias = forms.CharField(max_length=63, initial=DEFAULT_ALIAS, validators=[alias_name_validator],
                            help_text="Any short name: production, staging, canary…")
    version = forms.TypedChoiceField(coerce=int)
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Why — kept in the alias history.")

    def __init__(self, *args, model: RegisteredModel, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model
        self.fields["version"].choices = version_choices(model, active_only=True)

    def clean_alias(self) -> str:
        return self.cleaned_data["alias"].strip().lower()


class NoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Why — kept in the alias history.")


class TryItForm(forms.Form):
    audio = forms.FileField(help_text="Any format ingestion accepts: WAV, FLAC, MP3, OGG, M4A, WebM…")
    ref = forms.ChoiceField(required=False, label="Version")
    threshold = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0, label="Threshold",
        widget=forms.NumberInput(attrs={"step": "any", "placeholder": "calibrated"}),
        help_text="Detection: leave blank for the version's calibrated threshold.",
    )

    def __init__(self, *args, model: RegisteredModel, **kwargs):
        super().__init__(*args, **kwargs)
        aliases = [(alias.name, f"{alias.name} (v{alias.version.version})") for alias in model.aliases.select_related("version")]
        has_production = any(name == DEFAULT_ALIAS for name, _ in aliases)
        default_label = "Default: production" if has_production else "Default: latest version (no production alias yet)"
        self.fields["ref"].choices = [("", default_label), *aliases,
                                      *((f"v{number}", label) for number, label in version_choices(model))]


class SpeakForm(TryItForm):
    """Try it for a voice: text in, speech out (the version picker is Try it's)."""

    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000, strip=True,
                           help_text="Up to 2000 characters; long text is spoken sentence by sentence.")

    def __init__(self, *args, model: RegisteredModel, **kwargs):
        super().__init__(*args, model=model, **kwargs)
        del self.fields["audio"], self.fields["threshold"]
