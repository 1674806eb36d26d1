"""Exports: folder-per-label with manifest.csv (importable again) and the LJSpeech layout at 22.05 kHz."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
import soundfile as sf

from datasets_app.export import write_export
from datasets_app.importing import import_archive
from datasets_app.models import Clip
from tests.factories import ClipFactory, DatasetFactory

pytestmark = pytest.mark.django_db


def export(dataset, layout, clips=None) -> tuple[zipfile.ZipFile, object]:
    buffer = io.BytesIO()
    summary = write_export(dataset, clips if clips is not None else dataset.clips.active(), layout, buffer)
    buffer.seek(0)
    return zipfile.ZipFile(buffer), summary


def test_labels_layout_has_a_folder_per_label_and_a_manifest():
    dataset = DatasetFactory(name="kws")
    yes = ClipFactory(dataset=dataset, label="yes", original_name="Take 1 (final).WAV", transcript='say "yes", please', score=0.8, speaker="ann")
    unlabelled = ClipFactory(dataset=dataset, label="", original_name="../../weird.wav")
    archive, summary = export(dataset, "labels")
    assert summary.exported == 2 and summary.left_out == 0
    names = archive.namelist()
    assert f"yes/{yes.pk}-take-1-final.wav" in names
    assert f"_unlabelled/{unlabelled.pk}-weird.wav" in names
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    first = next(row for row in rows if row["clip_id"] == str(yes.pk))
    assert first["file"] == f"yes/{yes.pk}-take-1-final.wav"
    assert (first["label"], first["transcript"], first["score"], first["speaker"]) == ("yes", 'say "yes", please', "0.8", "ann")
    assert archive.read(first["file"]) == yes.audio.open("rb").read()


def test_exported_zip_imports_again_with_its_annotations_and_duplicates_are_found():
    source = DatasetFactory(name="source")
    ClipFactory(dataset=source, label="yes", transcript="one", speaker="ann", score=0.5)
    ClipFactory(dataset=source, label="no", transcript="two")
    archive, _ = export(source, "labels")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as copy:
        for name in archive.namelist():
            copy.writestr(name, archive.read(name))
    target = DatasetFactory(name="target")
    report = import_archive(target, io.BytesIO(buffer.getvalue()))
    assert report.layout == "manifest" and len(report.accepted) == 2
    assert sorted(target.clips.values_list("label", "transcript", "speaker", "score")) == [("no", "two", "", None), ("yes", "one", "ann", 0.5)]
    assert set(target.clips.values_list("content_hash", flat=True)) == set(source.clips.values_list("content_hash", flat=True))
    again = import_archive(source, io.BytesIO(buffer.getvalue()))
    assert [result.code for result in again.files] == ["duplicate", "duplicate"]


def test_ljspeech_layout_is_22k_mono_with_metadata():
    dataset = DatasetFactory(name="tts", sample_rate=16000)
    spoken = ClipFactory(dataset=dataset, transcript="Hello | world\nagain", seconds=1.0)
    ClipFactory(dataset=dataset, transcript="   ")
    archive, summary = export(dataset, "ljspeech")
    assert (summary.exported, summary.left_out) == (1, 1)
    clip_id = f"tts-{spoken.pk:06d}"
    assert archive.read("metadata.csv").decode() == f"{clip_id}|Hello world again|Hello world again\n"
    info = sf.info(io.BytesIO(archive.read(f"wavs/{clip_id}.wav")))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    assert info.frames == 22050


def test_ljspeech_export_of_a_22k_dataset_copies_the_files():
    dataset = DatasetFactory(name="tts22", sample_rate=22050)
    clip = ClipFactory(dataset=dataset, transcript="fine")
    archive, _ = export(dataset, "ljspeech")
    assert archive.read(f"wavs/tts22-{clip.pk:06d}.wav") == clip.audio.open("rb").read()


def test_export_honours_a_filtered_selection():
    dataset = DatasetFactory(name="kws")
    ClipFactory(dataset=dataset, label="yes")
    no = ClipFactory(dataset=dataset, label="no")
    archive, summary = export(dataset, "labels", Clip.objects.filter(label="no"))
    assert summary.exported == 1
    assert [name for name in archive.namelist() if name.endswith(".wav")] == [f"no/{no.pk}-{no.original_name[:-4]}.wav"]


def test_unknown_layout_is_an_error():
    with pytest.raises(ValueError):
        write_export(DatasetFactory(), Clip.objects.none(), "tar", io.BytesIO())
