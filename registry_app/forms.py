from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from registry_app.models import DEFAULT_ALIAS, ModelVersion, RegisteredModel, alias_name_validator
from training_app.ml.tasks import task_module
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
        uses = self.version.alias_uses()
        if status == ModelVersion.Status.ARCHIVED and self.version.status != status and uses:
            names = ", ".join(uses)
            raise ValidationError(f"{names} points at this version: move the alias before archiving it.")
        return status


def version_choices(model: RegisteredModel, active_only: bool = False) -> list[tuple[str, str]]:
    versions = model.versions.order_by("-version")
    if active_only:
        versions = versions.filter(status=ModelVersion.Status.ACTIVE)
    choices = []
    for version in versions:
        headline = version.headline_metric()
        # The figure before its name: a narrow select cuts the end of the text, and the figure is what matters.
        metric = f" · {metric_value(headline[1], headline[0])} {headline[0]}" if headline else ""
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


class TrafficForm(forms.Form):
    """Split an alias's traffic and/or shadow it; the note is kept in the alias history."""

    split_version = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Split to",
                                           help_text="Another version that answers part of the requests.")
    split_percent = forms.IntegerField(required=False, min_value=1, max_value=99, label="Share (%)",
                                       help_text="1–99% of the requests; the same caller key always meets the same "
                                                 "version.")
    shadow_version = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Shadow",
                                            help_text="Scores every request in the background; its answers are "
                                                      "logged and compared, never returned.")
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Why — kept in the alias history.")

    def __init__(self, *args, model: RegisteredModel, alias, **kwargs):
        traffic = alias.traffic()
        kwargs.setdefault("initial", {
            "split_version": (traffic["split"] or {}).get("version"),
            "split_percent": (traffic["split"] or {}).get("percent") or 10,
            "shadow_version": traffic["shadow"],
        })
        super().__init__(*args, **kwargs)
        self.alias = alias
        others = [(number, label) for number, label in version_choices(model, active_only=True)
                  if int(number) != alias.version.version]
        self.fields["split_version"].choices = [("", "No split: all requests to v%d" % alias.version.version), *others]
        self.fields["shadow_version"].choices = [("", "No shadow"), *others]
        if not getattr(task_module(model.task), "PREDICTS", True):  # a voice has no answer to compare
            del self.fields["shadow_version"]

    def clean(self):
        cleaned = super().clean()
        split, percent = cleaned.get("split_version"), cleaned.get("split_percent")
        if split is not None and not percent and "split_percent" not in self.errors:
            self.add_error("split_percent", "Give the split version's share of the requests (1–99%).")
        shadow = cleaned.get("shadow_version")
        if shadow is not None and shadow == split:
            self.add_error("shadow_version", "The split version already answers requests; shadow another version.")
        return cleaned


class LogSettingsForm(forms.ModelForm):
    class Meta:
        model = RegisteredModel
        fields = list(RegisteredModel.LOG_SETTINGS)
        labels = {"log_predictions": "Log predictions", "log_retention_days": "Keep for (days)",
                  "log_audio": "Keep the audio", "log_audio_max_bytes": "Audio size cap (bytes)"}


class FlagForm(forms.Form):
    """The right answer for a logged prediction, by the model's task, and the review queue to send it to."""

    label = forms.CharField(required=False, max_length=100, help_text="The right label.")
    score = forms.FloatField(required=False, min_value=0.0, max_value=1.0, help_text="The right score, 0–1.")
    transcript = forms.CharField(required=False, max_length=20000, widget=forms.Textarea(attrs={"rows": 2}),
                                 help_text="What was really said.")
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="What was wrong (kept with the clip if it is accepted).")
    dataset = forms.ModelChoiceField(queryset=None, required=False, to_field_name="name", label="Review queue",
                                     help_text="Send the audio to this dataset's review queue, where a trainer "
                                               "accepts it as a clip or dismisses it.")

    FIELD_OF_TASK = {"classification": "label", "detection": "label", "regression": "score",
                     "transcription": "transcript"}

    def __init__(self, *args, model: RegisteredModel, row, **kwargs):
        from datasets_app.models import Dataset

        super().__init__(*args, **kwargs)
        self.needed = self.FIELD_OF_TASK.get(model.task, "label")
        for name in ("label", "score", "transcript"):
            if name != self.needed:
                del self.fields[name]
        self.fields[self.needed].required = True
        self.fields["dataset"].queryset = Dataset.objects.order_by("name")
        if not row.audio:
            self.fields["dataset"].disabled = True
            self.fields["dataset"].help_text = ("This prediction's audio was not kept, so it cannot go to a review "
                                                "queue (turn on “Keep the audio” in the model's log settings).")
