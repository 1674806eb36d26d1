from __future__ import annotations

from typing import Any

from django import forms

from datasets_app.models import Dataset, name_validator
from training_app.ml.config import FIELDS, PRESETS, TrainConfig, applies, task_only_settings, task_preset
from training_app.models import TrainingJob

PRESET_HELP = {
    "quick": "a first look in a minute or two",
    "balanced": "good accuracy for a few hundred clips (the default)",
    "thorough": "longer training and a wider network for larger datasets",
}
# Advanced settings shown in the form, in order; blank number fields keep the preset's value.
NUMBER_SETTINGS = ("epochs", "batch_size", "learning_rate", "val_fraction", "test_fraction", "seed", "clip_seconds")
SWITCHES = ("time_shift", "noise", "spec_augment")
LABELS = {
    "epochs": "Epochs (at most)",
    "batch_size": "Batch size",
    "learning_rate": "Learning rate",
    "val_fraction": "Validation share",
    "test_fraction": "Test share",
    "seed": "Random seed",
    "clip_seconds": "Max clip duration (s)",
    "time_shift": "Shift clips in time",
    "noise": "Mix in background noise",
    "spec_augment": "Mask frequency bands and time steps (SpecAugment)",
    "holdout_speakers": "Speakers held out for testing",
    "positive_label": "Label(s) to detect",
    "target_fa_per_hour": "False accepts per hour allowed",
    "text_case": "Transcripts' case",
    "punctuation": "Punctuation",
    "numbers": "Numbers",
}
TASK_HELP = {
    "classification": "one label per clip, from the clips' labels",
    "regression": "a 0–1 score per clip, from the clips' scores",
    "detection": "does the clip contain the wake word (a label)? Calibrated to few false accepts per hour",
    "transcription": "speech to text, from the clips' transcripts (a CTC model trained from scratch)",
    "synthesis": "a text-to-speech voice from one speaker's clips and their transcripts",
}
# Transcription's text normalisation: (value, label) per choice; the first is the default.
TEXT_CHOICES = {
    "text_case": (("lower", "lower-case everything"), ("keep", "keep the case as typed")),
    "punctuation": (("strip", "remove (apostrophes inside words stay)"), ("keep", "keep")),
    "numbers": (("as_written", "as written (digits stay digits)"), ("words", "spell whole numbers out in words")),
}


def _task_names() -> list[str]:
    from training_app.ml.tasks import TASKS

    return list(TASKS)


def _preset_choices() -> list[tuple[str, str]]:
    choices = []
    for name, values in PRESETS.items():
        choices.append((name, f"{name.capitalize()}: up to {values['epochs']} epochs, {PRESET_HELP[name]}"))
    return choices


def _number_field(name: str) -> forms.Field:
    """A blank number keeps the chosen task and preset's value, which the placeholder shows (set per form)."""
    spec = FIELDS[name]
    attrs: dict[str, Any] = {}
    if spec.minimum is not None:
        attrs["min"] = spec.minimum
    if spec.maximum is not None:
        attrs["max"] = spec.maximum
    help_text = spec.help[0].upper() + spec.help[1:] + "."
    if spec.kind is int:
        return forms.IntegerField(required=False, label=LABELS[name], help_text=help_text,
                                  widget=forms.NumberInput(attrs={**attrs, "step": 1}))
    return forms.FloatField(required=False, label=LABELS[name], help_text=help_text,
                            widget=forms.NumberInput(attrs={**attrs, "step": "any"}))


def task_defaults() -> dict[str, dict[str, dict[str, Any]]]:
    """task -> preset -> the value of each advanced number and switch before any change: what the form's
    placeholders and switches show for the chosen task and preset."""
    return {task: {preset: {name: value for name, value in task_preset(preset, task).items()
                            if name in NUMBER_SETTINGS or name in SWITCHES}
                   for preset in PRESETS}
            for task in _task_names()}


class JobForm(forms.Form):
    """The new training job form. Ranges are checked by TrainConfig (through create_job), in one place."""

    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"), to_field_name="name", empty_label="Choose a dataset…"
    )
    model_name = forms.CharField(
        max_length=63, validators=[name_validator], label="Model name",
        help_text="The trained model is registered under this name as a new version.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    task = forms.ChoiceField(
        choices=lambda: [(name, f"{name.capitalize()}: {TASK_HELP[name]}") for name in _task_names()],
        initial="classification", widget=forms.RadioSelect, required=False,
    )
    preset = forms.ChoiceField(choices=_preset_choices, initial="balanced", widget=forms.RadioSelect)
    positive_label = forms.CharField(
        required=False, max_length=500, label=LABELS["positive_label"],
        help_text="Detection: the wake word's label, or several comma-separated. Every other clip is a negative.",
    )
    target_fa_per_hour = forms.FloatField(
        required=False, min_value=0.0, label=LABELS["target_fa_per_hour"],
        widget=forms.NumberInput(attrs={"placeholder": "0.5", "step": "any"}),
        help_text="Detection: the threshold is calibrated to at most this many false accepts per hour of "
        "ordinary audio. Default 0.5.",
    )

    text_frontend = forms.ChoiceField(
        required=False, label="Text front end", initial="phonemes",
        choices=[("phonemes", "Phonemes (espeak-ng)"), ("characters", "Characters")],
        help_text="Synthesis: how text is read. Phonemes pronounce unseen words better; characters need no espeak-ng.",
    )
    espeak_voice = forms.CharField(
        required=False, max_length=40, label="espeak-ng voice", widget=forms.TextInput(attrs={"placeholder": "en-us"}),
        help_text="Synthesis, phonemes: the language of the transcripts as an espeak-ng voice (en-us, en-gb, de, fr…).",
    )
    init_from = forms.ChoiceField(
        required=False, label="Fine-tune from",
        help_text="Synthesis: continue from a registered voice (a base voice adapted to this speaker), or train "
        "from scratch.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, choices in TEXT_CHOICES.items():
            self.fields[name] = forms.ChoiceField(
                required=False, choices=[("", "default")] + list(choices), label=LABELS[name],
                help_text=f"Transcription: {FIELDS[name].help.removeprefix('transcription: ')}.",
            )
        from training_app.fine_tune import bases

        self.fields["init_from"].choices = [("", "Nothing: train from scratch"), *bases.choices("synthesis")]
        from django.conf import settings

        self.fields["trainer"] = forms.ChoiceField(
            required=False, label="Trainer",
            choices=[("", "Built-in"), *((name, f"{name} (external: {', '.join(spec.tasks)})")
                                         for name, spec in sorted(settings.EXTERNAL_TRAINERS.items()))],
            help_text="An external trainer the administrator configured (AUDIOML_EXTERNAL_TRAINERS) runs instead of "
            "the built-in one; its output becomes the version.",
        )
        defaults = self.chosen_defaults()
        for name in NUMBER_SETTINGS:
            self.fields[name] = _number_field(name)
            self.fields[name].widget.attrs["placeholder"] = f"{defaults[name]:g}"
        for name in SWITCHES:
            self.fields[name] = forms.BooleanField(required=False, initial=defaults[name], label=LABELS[name])
        self.fields["holdout_speakers"] = forms.CharField(
            required=False, label=LABELS["holdout_speakers"], max_length=2000,
            help_text="Comma-separated speaker names whose clips all go to the test split, so the test "
            "measures voices the model never heard.",
        )

    def chosen_defaults(self) -> dict[str, Any]:
        """The advanced settings' values for the task and preset the form holds (as sent, else as first shown)."""
        source = self.data if self.is_bound else self.initial
        task, preset = source.get("task"), source.get("preset")
        task = task if task in _task_names() else "classification"
        return task_defaults()[task][preset if preset in PRESETS else "balanced"]

    @property
    def task_defaults(self) -> dict[str, dict[str, dict[str, Any]]]:
        return task_defaults()

    @property
    def advanced_fields(self):
        return [self[name] for name in NUMBER_SETTINGS]

    def task_field_names(self, task: str) -> list[str]:
        """The form's fields for the settings ``task`` alone reads (config.SETTING_TASKS says which those are)."""
        return [name for name in task_only_settings(task) if name in self.fields]

    @property
    def task_fields(self):
        """(task, its settings' bound fields) for each task that has settings of its own in the form."""
        return [(task, [self[name] for name in names]) for task in _task_names() if (names := self.task_field_names(task))]

    @property
    def synthesis_epochs(self) -> int:
        """How long a voice trains whatever the preset (synthesis' own defaults replace the presets')."""
        from training_app.ml.tasks import task_module

        return task_module("synthesis").DEFAULTS["epochs"]

    @property
    def trainer_field(self):
        return self["trainer"] if len(self.fields["trainer"].choices) > 1 else None

    @property
    def switch_fields(self):
        return [self[name] for name in SWITCHES]

    @property
    def has_advanced_errors(self) -> bool:
        return any(self[name].errors for name in (*NUMBER_SETTINGS, *SWITCHES, "holdout_speakers"))

    def clean_task(self) -> str:
        return self.cleaned_data.get("task") or "classification"

    def overrides(self) -> dict[str, Any]:
        """The settings the user changed from the preset (blank numbers and checked switches are defaults)."""
        data = self.cleaned_data
        overrides: dict[str, Any] = {}
        for name in NUMBER_SETTINGS:
            if data.get(name) is not None:
                overrides[name] = data[name]
        task, preset = data.get("task") or "classification", data.get("preset") or "balanced"
        preset_values = task_preset(preset, task) if preset in PRESETS else {}
        for name in SWITCHES:  # a switch left as the task and preset set it is no change
            if applies(name, task) and name in preset_values and bool(data.get(name)) != preset_values[name]:
                overrides[name] = bool(data.get(name))
        speakers = [s.strip() for s in (data.get("holdout_speakers") or "").split(",") if s.strip()]
        if speakers:
            overrides["holdout_speakers"] = speakers
        if data.get("task") == "detection":
            if (data.get("positive_label") or "").strip():
                overrides["positive_label"] = data["positive_label"]
            if data.get("target_fa_per_hour") is not None:
                overrides["target_fa_per_hour"] = data["target_fa_per_hour"]
        if data.get("task") == "transcription":
            overrides.update({name: data[name] for name in TEXT_CHOICES if data.get(name)})
        if data.get("trainer"):
            overrides["trainer"] = data["trainer"]
        if data.get("task") == "synthesis":
            for name in self.task_field_names("synthesis"):  # the front end's select always sends one: its default is no change
                value = (data.get(name) or "").strip()
                if value and value != getattr(TrainConfig, name):
                    overrides[name] = value
        return overrides

    def add_domain_error(self, field: str | None, message: str) -> None:
        """Attach an Unprocessable from create_job to the form field it names."""
        target = field if field in self.fields else None
        if target and message.startswith(f"{field}: "):
            message = message[len(field) + 2:]
        self.add_error(target, message[0].upper() + message[1:] if message else message)


class JobFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *TrainingJob.Status.choices])
    dataset = forms.ModelChoiceField(
        required=False, queryset=Dataset.objects.order_by("name"), to_field_name="name", empty_label="Any dataset"
    )

    def filter(self, jobs):
        if not self.is_valid():
            return jobs
        if status := self.cleaned_data.get("status"):
            jobs = jobs.filter(status=status)
        if dataset := self.cleaned_data.get("dataset"):
            jobs = jobs.filter(dataset=dataset)
        return jobs
