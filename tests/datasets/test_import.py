"""import_path / import_archive: both layouts from folders and zips, and archives that are refused."""

from __future__ import annotations

import io
import zipfile

import pytest

from datasets_app.importing import ImportRejected, import_archive, import_path
from datasets_app.models import Clip
from tests.audio import distinct_wav, zip_bytes
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def by_name(report):
    return {result.name: result for result in report.files}


def test_zip_with_a_folder_per_label(tmp_path):
    dataset = DatasetFactory()
    archive = tmp_path / "commands.zip"
    archive.write_bytes(zip_bytes({
        "commands/yes/001.wav": distinct_wav(1),
        "commands/yes/002.wav": distinct_wav(2),
        "commands/no/001.wav": distinct_wav(3),
        "commands/README.txt": b"Recorded in the kitchen",
        "__MACOSX/commands/yes/._001.wav": b"\x00\x05\x16\x07",
        "commands/.DS_Store": b"junk",
    }))
    progress = []
    report = import_path(dataset, archive, progress=lambda done, total: progress.append((done, total)))
    assert report.layout == "folders"
    assert len(report.accepted) == 3 and not report.rejected
    assert report.skipped == ["README.txt"]
    assert dataset.label_counts() == {"yes": 2, "no": 1}
    assert sorted(Clip.objects.values_list("original_name", flat=True)) == ["no/001.wav", "yes/001.wav", "yes/002.wav"]
    assert progress[-1] == (3, 3)


def test_zip_of_one_folder_uses_it_as_the_label():
    dataset = DatasetFactory()
    report = import_archive(dataset, io.BytesIO(zip_bytes({"noise/a.wav": distinct_wav(1), "noise/b.wav": distinct_wav(2)})))
    assert len(report.accepted) == 2
    assert dataset.label_counts() == {"noise": 2}


def test_files_at_the_top_get_the_default_label():
    dataset = DatasetFactory()
    report = import_archive(dataset, io.BytesIO(zip_bytes({"a.wav": distinct_wav(1), "b.wav": distinct_wav(2)})), default_label="unknown")
    assert len(report.accepted) == 2
    assert dataset.label_counts() == {"unknown": 2}


def test_zip_with_a_manifest_csv():
    dataset = DatasetFactory()
    manifest = (
        "file,label,transcript,score,speaker\n"
        'clips/a.wav,happy,"Hello, there",0.9,alice\n'
        "clips/b.wav,angry,,0.1,bob\n"
        "clips/missing.wav,happy,,,\n"
        "clips/c.wav,sad,,7,carol\n"
    )
    report = import_archive(dataset, io.BytesIO(zip_bytes({
        "manifest.csv": manifest.encode(),
        "clips/a.wav": distinct_wav(1),
        "clips/b.wav": distinct_wav(2),
        "clips/c.wav": distinct_wav(3),
        "clips/extra.wav": distinct_wav(4),
    })))
    results = by_name(report)
    assert report.layout == "manifest"
    a = Clip.objects.get(original_name="clips/a.wav")
    assert (a.label, a.transcript, a.score, a.speaker) == ("happy", "Hello, there", 0.9, "alice")
    assert Clip.objects.get(original_name="clips/b.wav").transcript == ""
    assert results["clips/missing.wav"].code == "missing"
    assert "listed in manifest.csv but not found" in results["clips/missing.wav"].reason
    assert results["clips/c.wav"].code == "invalid-score"
    assert results["clips/extra.wav"].code == "not-in-manifest"
    assert len(report.accepted) == 2 and len(report.rejected) == 3


def test_manifest_in_a_folder_with_semicolons_and_a_bom(tmp_path):
    folder = tmp_path / "export"
    (folder / "wav").mkdir(parents=True)
    (folder / "wav" / "one.wav").write_bytes(distinct_wav(1))
    (folder / "wav" / "two.wav").write_bytes(distinct_wav(2))
    (folder / "manifest.csv").write_text("\ufefffile;label;speaker\nwav/one.wav;yes;ann\n./wav/two.wav;no;ben\n", encoding="utf-8")
    dataset = DatasetFactory()
    report = import_path(dataset, folder)
    assert len(report.accepted) == 2, report.as_dict()
    assert dict(Clip.objects.values_list("label", "speaker")) == {"yes": "ann", "no": "ben"}


def test_manifest_without_a_file_column_is_refused(tmp_path):
    (tmp_path / "a.wav").write_bytes(distinct_wav(1))
    (tmp_path / "manifest.csv").write_text("name,label\na.wav,yes\n")
    with pytest.raises(ImportRejected) as error:
        import_path(DatasetFactory(), tmp_path)
    assert "no 'file' column" in error.value.reason
    assert not Clip.objects.exists()


def test_ljspeech_metadata_csv():
    dataset = DatasetFactory(sample_rate=22050)
    metadata = (
        "LJ001-0001|Printing, in the only sense with which we are at present concerned|"
        "Printing, in the only sense with which we are at present concerned\n"
        'LJ001-0002|in 1850 "the" arts|in eighteen fifty "the" arts\n'
        "LJ001-0003|missing audio|missing audio\n"
    )
    report = import_archive(dataset, io.BytesIO(zip_bytes({
        "LJSpeech-1.1/metadata.csv": metadata.encode(),
        "LJSpeech-1.1/README": b"The LJ Speech Dataset",
        "LJSpeech-1.1/wavs/LJ001-0001.wav": distinct_wav(1, sample_rate=22050),
        "LJSpeech-1.1/wavs/LJ001-0002.wav": distinct_wav(2, sample_rate=22050),
    })))
    assert report.layout == "ljspeech"
    assert len(report.accepted) == 2
    second = Clip.objects.get(original_name="wavs/LJ001-0002.wav")
    assert second.transcript == 'in eighteen fifty "the" arts'
    assert by_name(report)["LJ001-0003"].code == "missing"
    assert report.skipped == ["README"]


def test_demo_style_folder_with_manifest(tmp_path):
    for n in range(4):
        (tmp_path / f"clip{n}.wav").write_bytes(distinct_wav(n))
    (tmp_path / "manifest.csv").write_text(
        "file,label,speaker\n" + "".join(f"clip{n}.wav,{'yes' if n % 2 else 'no'},spk{n}\n" for n in range(4))
    )
    dataset = DatasetFactory()
    report = import_path(dataset, tmp_path)
    assert len(report.accepted) == 4
    assert dataset.label_counts() == {"no": 2, "yes": 2}
    assert set(Clip.objects.values_list("speaker", flat=True)) == {"spk0", "spk1", "spk2", "spk3"}


def test_reimporting_the_same_archive_reports_duplicates():
    dataset = DatasetFactory()
    data = zip_bytes({"yes/a.wav": distinct_wav(1), "no/b.wav": distinct_wav(2)})
    assert len(import_archive(dataset, io.BytesIO(data)).accepted) == 2
    again = import_archive(dataset, io.BytesIO(data))
    assert [result.code for result in again.files] == ["duplicate", "duplicate"]
    assert Clip.objects.count() == 2


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ({"yes/../../evil.wav": distinct_wav(1)}, "contains '..'"),
        ({"/etc/cron.d/evil.wav": distinct_wav(1)}, "absolute path"),
        ({"C:/Windows/evil.wav": distinct_wav(1)}, "absolute path"),
    ],
    ids=["dot-dot", "absolute", "drive-letter"],
)
def test_archives_with_path_tricks_are_refused(entries, words):
    data = zip_bytes({"yes/fine.wav": distinct_wav(2), **entries})
    with pytest.raises(ImportRejected) as error:
        import_archive(DatasetFactory(), io.BytesIO(data))
    assert words in error.value.reason
    assert not Clip.objects.exists()


def test_archive_with_a_symlink_is_refused():
    data = zip_bytes({"yes/fine.wav": distinct_wav(2)}, symlinks={"yes/link.wav": "/etc/passwd"})
    with pytest.raises(ImportRejected) as error:
        import_archive(DatasetFactory(), io.BytesIO(data))
    assert "symbolic link" in error.value.reason
    assert not Clip.objects.exists()


def test_archive_with_too_many_entries_is_refused(settings):
    settings.ZIP_MAX_ENTRIES = 5
    data = zip_bytes({f"yes/{n}.wav": distinct_wav(n, seconds=0.2) for n in range(6)})
    with pytest.raises(ImportRejected) as error:
        import_archive(DatasetFactory(), io.BytesIO(data))
    assert "6 entries" in error.value.reason and "at most 5" in error.value.reason


def test_zip_bomb_is_refused():
    data = zip_bytes({"yes/a.wav": distinct_wav(1), "yes/bomb.wav": b"\x00" * (20 * 1024 * 1024)})
    assert len(data) < 200 * 1024
    with pytest.raises(ImportRejected) as error:
        import_archive(DatasetFactory(), io.BytesIO(data))
    assert "zip bomb" in error.value.reason
    assert not Clip.objects.exists()


def test_many_small_compressible_files_are_judged_on_the_whole_archive(settings):
    settings.ZIP_MAX_RATIO = 3
    data = zip_bytes({f"yes/{n}.wav": b"\x00" * 50000 for n in range(4)})
    with pytest.raises(ImportRejected) as error:
        import_archive(DatasetFactory(), io.BytesIO(data))
    assert "expands to" in error.value.reason


def test_not_a_zip_is_refused():
    with pytest.raises(ImportRejected) as error:
        import_archive(DatasetFactory(), io.BytesIO(b"PK but not really a zip"))
    assert error.value.reason == "not a valid zip archive"


def test_corrupt_member_is_reported_and_the_rest_imported():
    data = bytearray(zip_bytes({"yes/a.wav": distinct_wav(1), "yes/b.wav": distinct_wav(2)}, compression=zipfile.ZIP_STORED))
    # Flip bytes inside the second member's data so its CRC check fails.
    position = data.find(b"yes/b.wav") + len("yes/b.wav") + 100
    data[position : position + 8] = b"\xff" * 8
    report = import_archive(DatasetFactory(), io.BytesIO(bytes(data)))
    results = by_name(report)
    assert results["yes/a.wav"].accepted
    assert results["yes/b.wav"].code == "unreadable"


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        import_path(DatasetFactory(), tmp_path / "nowhere")
