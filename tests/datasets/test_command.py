"""manage.py import_dataset NAME PATH."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from datasets_app.models import Clip, Dataset
from tests.audio import distinct_wav, zip_bytes
from tests.factories import DatasetFactory, StaffFactory

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_dataset", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_folder_creating_the_dataset(tmp_path):
    for label in ("yes", "no"):
        for n in range(3):
            (tmp_path / label).mkdir(exist_ok=True)
            (tmp_path / label / f"{n}.wav").write_bytes(distinct_wav(n + (10 if label == "no" else 0)))
    (tmp_path / "no" / "broken.wav").write_bytes(b"broken")
    user = StaffFactory(username="importer")
    out, err = run("commands", str(tmp_path), "--create", "--sample-rate", "22050", "--user", "importer")
    dataset = Dataset.objects.get(name="commands")
    assert dataset.sample_rate == 22050 and dataset.created_by == user
    assert dataset.label_counts() == {"no": 3, "yes": 3}
    assert "6 clip(s) added, 1 rejected." in out
    assert "rejected no/broken.wav: not a decodable audio file" in out
    assert "7/7" in err  # the progress bar reached the end
    assert set(Clip.objects.values_list("uploaded_by", flat=True)) == {user.pk}


def test_import_zip_into_an_existing_dataset_with_a_default_label(tmp_path):
    DatasetFactory(name="noise")
    archive = tmp_path / "noise.zip"
    archive.write_bytes(zip_bytes({"a.wav": distinct_wav(1), "b.wav": distinct_wav(2)}))
    out, _ = run("noise", str(archive), "--label", "background")
    assert "2 clip(s) added" in out
    assert set(Clip.objects.values_list("label", flat=True)) == {"background"}


def test_missing_dataset_without_create_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="Add --create"):
        run("nope", str(tmp_path))


def test_invalid_name_is_refused_not_sanitised(tmp_path):
    with pytest.raises(CommandError, match="lower-case letters"):
        run("My Data", str(tmp_path), "--create")
    assert not Dataset.objects.exists()


def test_unsafe_archive_is_refused(tmp_path):
    DatasetFactory(name="kws")
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"../escape.wav": distinct_wav(1)}))
    with pytest.raises(CommandError, match="Refused: entry '../escape.wav' contains '..'"):
        run("kws", str(archive))
    assert not Clip.objects.exists()


def test_bad_label_option_and_missing_path(tmp_path):
    DatasetFactory(name="kws")
    with pytest.raises(CommandError, match="--label"):
        run("kws", str(tmp_path), "--label", "a/b")
    with pytest.raises(CommandError, match="does not exist"):
        run("kws", str(tmp_path / "missing"))
