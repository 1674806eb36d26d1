from __future__ import annotations

from collections import Counter

from training_app.ml.data import ClipRecord
from training_app.ml.split import split_clips


def make_clips(labels: dict[str, int], speakers: int = 0) -> list[ClipRecord]:
    """In-memory records (the split never opens files); speaker k says every label's k-th clip."""
    clips = []
    for label, count in labels.items():
        for index in range(count):
            speaker = f"voice-{index % speakers}" if speakers else ""
            clips.append(ClipRecord(f"{label}-{index}", f"/nonexistent/{label}-{index}.wav", label,
                                    f"{label}{index}", speaker))
    return clips


def label_counts(clips: list[ClipRecord], indices: list[int]) -> Counter[str]:
    return Counter(clips[i].label for i in indices)


def test_every_clip_lands_in_exactly_one_split():
    clips = make_clips({"yes": 20, "no": 20, "noise": 20}, speakers=10)
    split = split_clips(clips, 0.2, 0.2, seed=0)

    everything = split.train + split.val + split.test
    assert sorted(everything) == list(range(len(clips)))


def test_split_is_stratified_by_label():
    clips = make_clips({"yes": 40, "no": 20, "noise": 10})
    split = split_clips(clips, 0.2, 0.1, seed=3)

    assert label_counts(clips, split.val) == {"yes": 8, "no": 4, "noise": 2}
    assert label_counts(clips, split.test) == {"yes": 4, "no": 2, "noise": 1}
    assert split.notes == []


def test_no_speaker_appears_in_two_splits():
    clips = make_clips({"yes": 24, "no": 24, "up": 24}, speakers=12)
    split = split_clips(clips, 0.2, 0.2, seed=1)

    speakers = [{clips[i].speaker for i in split.indices(name)} for name in ("train", "val", "test")]
    assert all(speakers)
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    assert split.grouped_by_speaker


def test_held_out_speakers_go_entirely_to_test():
    clips = make_clips({"yes": 20, "no": 20}, speakers=10)
    split = split_clips(clips, 0.2, 0.0, seed=0, holdout_speakers=["voice-3", "voice-7"])

    test_speakers = {clips[i].speaker for i in split.test}
    assert test_speakers == {"voice-3", "voice-7"}
    assert len(split.test) == 8
    assert not any(clips[i].speaker in test_speakers for i in split.train + split.val)


def test_grouping_that_forces_other_fractions_is_reported():
    clips = make_clips({"yes": 4, "no": 4, "up": 4}, speakers=4)
    split = split_clips(clips, 0.1, 0.1, seed=0)

    assert any("Validation split holds 25.0% instead of the requested 10%" in note for note in split.notes)
    assert any("grouping clips by speaker" in note for note in split.notes)


def test_small_dataset_still_has_every_label_in_train_and_validation():
    clips = make_clips({"yes": 5, "no": 5, "noise": 5})
    split = split_clips(clips, 0.05, 0.0, seed=0)

    assert set(label_counts(clips, split.train)) == {"yes", "no", "noise"}
    assert set(label_counts(clips, split.val)) == {"yes", "no", "noise"}


def test_speaker_groups_are_moved_so_every_label_reaches_train_and_validation():
    # Each label is spoken by its own two voices, so covering both splits needs whole-group moves.
    clips = [ClipRecord(f"{label}{i}", "x.wav", label, f"{label}{i}", f"{label}-voice-{i % 2}")
             for label in ("yes", "no", "up") for i in range(6)]
    split = split_clips(clips, 0.3, 0.3, seed=5)

    for name in ("train", "val"):
        assert set(label_counts(clips, split.indices(name))) == {"yes", "no", "up"}


def test_same_seed_gives_same_split_and_other_seed_another():
    clips = make_clips({"yes": 30, "no": 30}, speakers=15)

    first, again = split_clips(clips, 0.2, 0.2, seed=11), split_clips(clips, 0.2, 0.2, seed=11)
    other = split_clips(clips, 0.2, 0.2, seed=12)

    assert (first.train, first.val, first.test) == (again.train, again.val, again.test)
    assert (first.train, first.val, first.test) != (other.train, other.val, other.test)


def test_single_speaker_data_is_split_clip_by_clip_with_a_note():
    clips = make_clips({"yes": 10, "no": 10}, speakers=1)
    split = split_clips(clips, 0.2, 0.2, seed=0)

    assert split.val and split.test
    assert not split.grouped_by_speaker
    assert any("come from one speaker ('voice-0')" in note for note in split.notes)


def test_summary_reports_counts_per_label_and_speakers():
    clips = make_clips({"yes": 10, "no": 10}, speakers=5)
    summary = split_clips(clips, 0.2, 0.2, seed=0).summary(clips)

    assert summary["train"] + summary["val"] + summary["test"] == 20
    assert sum(summary["per_label"]["yes"].values()) == 10
    assert sorted(sum(summary["speakers"].values(), [])) == [f"voice-{i}" for i in range(5)]
