from __future__ import annotations

import dataclasses

import pytest

from training_app.ml.config import FIELDS, PRESETS, ConfigError, FeatureConfig, TrainConfig, parse_override


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_a_valid_config(preset):
    config = TrainConfig.from_dict(preset)

    assert config.preset == preset
    assert config.epochs == PRESETS[preset]["epochs"]


def test_presets_grow_from_quick_to_thorough():
    quick, balanced, thorough = (TrainConfig.from_dict(name) for name in ("quick", "balanced", "thorough"))

    assert quick.epochs < balanced.epochs < thorough.epochs


def test_overrides_replace_preset_values():
    config = TrainConfig.from_dict("quick", {"epochs": 7, "noise": False, "learning_rate": 1})

    assert (config.epochs, config.noise, config.learning_rate) == (7, False, 1.0)


def test_to_dict_round_trips_through_from_dict():
    config = TrainConfig.from_dict("thorough", {"seed": 42, "holdout_speakers": ["anna", "bob"]})
    data = config.to_dict()

    assert TrainConfig.from_dict(data["preset"], data) == config
    assert data["holdout_speakers"] == ["anna", "bob"]


def test_config_is_frozen():
    config = TrainConfig.from_dict("quick")

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"epochs": 0}, "epochs", "must be at least 1 and at most 1000, got 0"),
        ({"epochs": 1001}, "epochs", "must be at least 1 and at most 1000, got 1001"),
        ({"epochs": 2.5}, "epochs", "must be a whole number, got 2.5"),
        ({"epochs": "5"}, "epochs", "must be a whole number, got '5'"),
        ({"epochs": True}, "epochs", "must be a whole number, got True"),
        ({"batch_size": 0}, "batch_size", "at least 1 and at most 512"),
        ({"batch_size": 513}, "batch_size", "at least 1 and at most 512, got 513"),
        ({"learning_rate": 0}, "learning_rate", "must be greater than 0 and at most 1, got 0"),
        ({"learning_rate": 1.5}, "learning_rate", "must be greater than 0 and at most 1, got 1.5"),
        ({"learning_rate": float("nan")}, "learning_rate", "must be a number"),
        ({"val_fraction": 0.01}, "val_fraction", "must be at least 0.05 and at most 0.5, got 0.01"),
        ({"val_fraction": 0.6}, "val_fraction", "at most 0.5"),
        ({"test_fraction": -0.1}, "test_fraction", "must be at least 0 and at most 0.5, got -0.1"),
        ({"val_fraction": 0.4, "test_fraction": 0.4}, "test_fraction", "val_fraction + test_fraction is 0.8"),
        ({"seed": -1}, "seed", "must be at least 0"),
        ({"seed": "abc"}, "seed", "must be a whole number, got 'abc'"),
        ({"time_shift": "yes"}, "time_shift", "must be true or false, got 'yes'"),
        ({"noise": 1}, "noise", "must be true or false, got 1"),
        ({"spec_augment": None}, "spec_augment", "must be true or false, got None"),
        ({"clip_seconds": 0.1}, "clip_seconds", "must be at least 0.25 and at most 30, got 0.1"),
        ({"clip_seconds": 31}, "clip_seconds", "at most 30, got 31"),
        ({"early_stopping_patience": -1}, "early_stopping_patience", "must be at least 0"),
        ({"target_far": 0}, "target_far", "must be greater than 0"),
        ({"holdout_speakers": "anna"}, "holdout_speakers", "must be a list of speaker names"),
        ({"holdout_speakers": ["anna", ""]}, "holdout_speakers", "every speaker must be a non-empty string"),
        ({"task": "captioning"}, "task", "unsupported task 'captioning'"),
    ],
)
def test_invalid_values_name_the_field_and_the_reason(overrides, field, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("balanced", overrides)

    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


def test_unknown_setting_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("balanced", {"epochz": 3})

    assert caught.value.field == "epochz"
    assert "unknown setting 'epochz'" in caught.value.message
    assert ", ".join(sorted(FIELDS)) in caught.value.message


def test_unknown_preset_is_rejected():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("turbo")

    assert caught.value.field == "preset"
    assert "quick, balanced, thorough" in caught.value.message


def test_conflicting_preset_in_overrides_is_rejected():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"preset": "thorough"})

    assert caught.value.field == "preset"


def test_feature_config_follows_clip_seconds():
    features = TrainConfig.from_dict("quick", {"clip_seconds": 0.5}).features()

    assert features.clip_samples == 8000
    assert features.n_frames == 8000 // features.hop + 1


def test_feature_cache_key_is_stable_and_depends_on_every_parameter():
    key = FeatureConfig().cache_key()

    assert key == FeatureConfig().cache_key()
    assert len(key) == 16
    changed = {FeatureConfig(**{name: value}).cache_key()
               for name, value in [("n_mels", 64), ("hop", 128), ("clip_samples", 8000), ("n_fft", 512)]}
    assert key not in changed
    assert len(changed) == 4


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [("epochs", "12", 12), ("learning_rate", "1e-3", 0.001), ("noise", "false", False), ("noise", "on", True),
     ("holdout_speakers", "anna, bob", ["anna", "bob"])],
)
def test_parse_override_types_command_line_values(name, text, value):
    assert parse_override(name, text) == value


def test_parse_override_rejects_bad_text():
    with pytest.raises(ConfigError) as caught:
        parse_override("epochs", "ten")

    assert caught.value.message == "must be a whole number, got 'ten'"


def test_transcription_is_assigned_the_settings_its_ctc_trainer_reads():
    """Transcription trains its own CTC network on whole utterances (ml/ctc.py): fixed blocks and kernel, SpecAugment
    and the speed/vocal-tract warp. The window models' settings (clip length, shifts, noise mixing, architecture,
    convolutions per block) were listed as read by it; the job page showed them as used and the form recorded a
    ticked noise switch that changed nothing."""
    import re
    from pathlib import Path

    from training_app.ml import config

    ml = Path(config.__file__).parent
    read = set(re.findall(r"\bcfg\.(\w+)", (ml / "ctc.py").read_text() + (ml / "tasks" / "transcription.py").read_text()))
    window_only = ("architecture", "convs_per_block", "clip_seconds", "time_shift", "noise")
    for name in window_only:
        assert config.SETTING_TASKS[name] == ("classification", "regression", "detection"), name
        assert not config.applies(name, "transcription") and name not in read, name
    for name in ("spec_augment", "warp", "weight_decay", "channels", "dropout", "epochs", "batch_size", "learning_rate",
                 "seed", "text_case", "punctuation", "numbers", "holdout_speakers"):
        assert config.applies(name, "transcription") and name in read, name
    # Read through the shared split and end-of-epoch steps (ml/split.py, train.end_epoch).
    shared = (ml / "split.py").read_text() + (ml / "train.py").read_text()
    for name in ("test_fraction", "val_fraction", "early_stopping_patience"):
        assert config.applies(name, "transcription") and f"cfg.{name}" in shared, name
    # Nothing another task alone reads is given to transcription, and the CTC trainer reads none of it.
    for name, tasks in config.SETTING_TASKS.items():
        if len(tasks) == 1 and tasks != ("transcription",):
            assert not config.applies(name, "transcription") and name not in read, name
