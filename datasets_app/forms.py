from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from datasets_app.export import LAYOUTS
from datasets_app.models import CLIP_SORTS, Clip, Dataset, clean_clip_metadata

UNLABELLED = "__unlabelled__"
NO_SPEAKER = "__none__"
STATUS_CHOICES = [("active", "Active"), ("trashed", "In the trash"), ("all", "All")]
KIND_CHOICES = [("", "Clips and backgrounds"), ("clip", "Clips"), ("background", "Background recordings")]


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description", "sample_rate", "licence", "source", "consent_note"]
        widgets = {
            "name": forms.TextInput(attrs={"placeholder": "e.g. wake-word-v2", "autocomplete": "off", "spellcheck": "false"}),
            "description": forms.Textarea(attrs={"rows": 2, "placeholder": "What is in it, where it came from"}),
            "licence": forms.TextInput(attrs={"placeholder": "e.g. CC-BY-4.0, CC0-1.0, proprietary"}),
            "source": forms.TextInput(attrs={"placeholder": "e.g. https://… , studio session 2026-03, in-house recordings"}),
            "consent_note": forms.Textarea(attrs={"rows": 2, "placeholder": "e.g. speakers signed release form v2; synthetic voices, no people"}),
        }
        labels = {"consent_note": "Consent"}
        help_texts = {
            "name": "Lower-case letters, digits, '-' and '_'. Used in URLs and the API.",
            "sample_rate": "Every clip is stored at this rate. 16 kHz suits speech and keywords; 22.05 kHz TTS data.",
            "licence": "Shown on the model card of every version trained on this dataset.",
            "consent_note": "Whether and how the speakers agreed to be recorded and to this use (model cards show it).",
        }
        error_messages = {"name": {"unique": "A dataset with this name already exists: choose another name."}}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.clips.exists():
            self.fields["sample_rate"].disabled = True
            self.fields["sample_rate"].help_text = (
                f"Fixed: the clips are stored at {self.instance.sample_rate} Hz. Export and import into a new dataset "
                "to change it."
            )


class ClipFilterForm(forms.Form):
    """The clip table's filters (GET). Invalid values fall back to the defaults instead of failing the page."""

    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(attrs={"type": "search", "placeholder": "Transcript, file name, notes…"}))
    label = forms.ChoiceField(required=False)
    speaker = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)
    kind = forms.ChoiceField(required=False, choices=KIND_CHOICES)
    sort = forms.ChoiceField(required=False, choices=[(key, label) for key, (label, _) in CLIP_SORTS.items()])
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, data, dataset: Dataset, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        labels = dataset.clips.exclude(label="").values_list("label", flat=True).distinct().order_by("label")
        speakers = dataset.clips.exclude(speaker="").values_list("speaker", flat=True).distinct().order_by("speaker")
        self.fields["label"].choices = [("", "Any label"), (UNLABELLED, "(no label)")] + [(value, value) for value in labels]
        self.fields["speaker"].choices = [("", "Any speaker"), (NO_SPEAKER, "(no speaker)")] + [(value, value) for value in speakers]
        self.is_valid()

    def value(self, name: str, default=""):
        if name in self.errors:
            return default
        value = self.cleaned_data.get(name)
        return default if value in (None, "") else value

    def filters(self) -> dict:
        label = self.value("label", None)
        speaker = self.value("speaker", None)
        return {
            "status": self.value("status", "active"),
            "label": "" if label == UNLABELLED else label,
            "speaker": "" if speaker == NO_SPEAKER else speaker,
            "q": self.value("q", ""),
            "kind": self.value("kind", None),
        }

    def apply(self, clips):
        return clips.filtered(**self.filters()).sorted_by(self.value("sort", "newest"))

    def is_filtered(self) -> bool:
        filters = self.filters()
        return bool(
            filters["q"] or filters["label"] is not None or filters["speaker"] is not None
            or filters["status"] != "active" or filters["kind"] is not None
        )

    def querystring(self, **overrides) -> str:
        """The current filters as a query string (for pagination, sorting and export links)."""
        from django.http import QueryDict

        query = QueryDict(mutable=True)
        for name in ("q", "label", "speaker", "status", "kind", "sort"):
            value = overrides.get(name, self.value(name, ""))
            if value:
                query[name] = value
        if overrides.get("page"):
            query["page"] = overrides["page"]
        return query.urlencode()


class ClipForm(forms.ModelForm):
    """Full edit of a clip's annotations; saved through Clip.edit (validation, updated_by/at, audit)."""

    class Meta:
        model = Clip
        fields = list(Clip.EDITABLE_FIELDS)
        widgets = {
            "transcript": forms.Textarea(attrs={"rows": 3}),
            "notes": forms.Textarea(attrs={"rows": 2}),
            "score": forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
        }
        help_texts = {"score": "A number from 0 to 1, or empty."}

    def save(self, by=None, commit=True) -> list[str]:
        """Apply the edits to the stored clip (is_valid() already copied them onto the instance); returns
        the fields that changed."""
        original = Clip.objects.get(pk=self.instance.pk)
        changed = original.edit({name: self.cleaned_data[name] for name in Clip.EDITABLE_FIELDS}, by=by)
        self.instance = original
        return changed


class InlineFieldForm(forms.Form):
    """One field of one clip, edited in place in the clip table."""

    value = forms.CharField(required=False, strip=False)

    def __init__(self, *args, field: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.field_name = field

    def clean_value(self):
        try:
            return clean_clip_metadata(**{self.field_name: self.cleaned_data["value"]})[self.field_name]
        except ValidationError as exc:
            raise ValidationError(exc.message_dict[self.field_name]) from None


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            if not data and self.required:
                raise ValidationError(self.error_messages["required"], code="required")
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class UploadForm(forms.Form):
    """Upload without JavaScript: audio files and zip archives, with annotations applied to every file."""

    files = MultipleFileField(label="Audio files or zip archives")
    label = forms.CharField(required=False, max_length=100)
    transcript = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 1}))
    speaker = forms.CharField(required=False, max_length=100)
    score = forms.CharField(required=False, help_text="0 to 1")
    source = forms.CharField(required=False, strip=False, help_text="Where these files come from, when not the "
                             "dataset's source (a URL, a device, a corpus); a zip manifest's source column wins")
    background = forms.BooleanField(required=False, label="Long background recordings")

    METADATA = ("label", "transcript", "speaker", "score", "source")

    def clean(self):
        cleaned = super().clean()
        try:
            clean_clip_metadata(**{name: cleaned.get(name, "") for name in self.METADATA})
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                self.add_error(name, messages)
        return cleaned


class BulkForm(forms.Form):
    ACTIONS = [("trash", "Move to trash"), ("restore", "Restore"), *[(f"export-{key}", f"Export ({label})") for key, label in LAYOUTS.items()]]

    action = forms.ChoiceField(choices=ACTIONS)
    ids = forms.Field(widget=forms.MultipleHiddenInput, required=False)

    def __init__(self, data, dataset: Dataset, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.dataset = dataset

    def clean_ids(self) -> list[int]:
        """The selected clips of this dataset (ids of other datasets' clips are ignored)."""
        requested = [int(value) for value in self.cleaned_data.get("ids") or [] if str(value).isdigit()]
        ids = sorted(self.dataset.clips.filter(pk__in=requested).values_list("pk", flat=True))
        if not ids:
            raise ValidationError("Select at least one clip.")
        return ids


class ExportForm(forms.Form):
    layout = forms.ChoiceField(choices=list(LAYOUTS.items()))
