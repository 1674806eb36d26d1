"""The sweeper removes what a crash leaves without a row (old enough not to be an upload in flight) and nothing
else; the feature cache stays under its size limit and a full cache is a miss, not a failure."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from django_q.models import Schedule

from audioml import sweep
from tests.factories import ClipFactory, DatasetFactory, TrainingJobFactory

HOUR_AGO = time.time() - 2 * 3600


def old(path: Path, data: bytes = b"x" * 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def leftovers(db, settings, register):
    """Rows with their files, plus one of everything a SIGKILL can leave behind (aged an hour or two)."""
    media, work = Path(settings.MEDIA_ROOT), Path(settings.WORK_DIR)
    dataset = DatasetFactory(name="kept")
    clips = [ClipFactory(dataset=dataset), ClipFactory(dataset=dataset, status="trashed")]
    version = register()
    keep = files_under(media)
    assert {clip.audio.name for clip in clips} <= keep
    assert {entry["path"] for entry in version.artifacts} <= keep
    for name in keep:
        old(media / name)
    orphans = {
        f"clips/{dataset.pk}/ab/{'ab' * 32}.wav",  # a clip file whose row never committed
        f"clips/{dataset.pk}/cd/{'cd' * 32}_Xy12AbC.wav",  # a renamed copy from a re-upload
        "clips/999/ef/orphan.wav",  # of a dataset deleted while its files were being written
        f"models/{version.model.name}/v2/model.pt2",  # a version that never got its row
        ".incoming/tmpa1b2c3.part",
    }
    for name in orphans:
        old(media / name)
    young = media / f"clips/{dataset.pk}/12/{'12' * 32}.wav"  # an upload in flight right now
    young.parent.mkdir(parents=True, exist_ok=True)  # a clip above may hash into the same folder
    young.write_bytes(b"in flight")
    running = TrainingJobFactory(status="running", dataset=dataset)
    finished = TrainingJobFactory(status="failed", dataset=dataset)
    work_leftovers = [
        old(Path(settings.FILE_UPLOAD_TEMP_DIR) / "tmpq9w8e7.upload.wav"),
        old(work / "ingest" / "archive-k2j3h4" / "000001.wav"),
        old(work / "jobs" / str(finished.pk) / "model.pt2"),
        old(work / "jobs" / f"{finished.pk}.tmp-abc" / "model.onnx"),
        old(work / "jobs" / "424242" / "weights.pt"),  # a job deleted since
    ]
    old(work / "ingest" / "archive-k2j3h4")
    running_file = old(work / "jobs" / str(running.pk) / "weights.pt")
    return {"keep": keep, "orphans": orphans, "young": young, "work": work_leftovers, "running": running_file}


def test_the_sweeper_removes_exactly_what_no_row_references_once_old_enough(leftovers, settings):
    media = Path(settings.MEDIA_ROOT)
    report = sweep.sweep()
    assert files_under(media) == leftovers["keep"] | {str(leftovers["young"].relative_to(media))}
    assert report.kept_young >= 1
    assert len(report.removed) >= len(leftovers["orphans"]) + 3
    for path in leftovers["work"]:
        assert not path.exists(), path
    assert not (Path(settings.WORK_DIR) / "ingest" / "archive-k2j3h4").exists()
    assert leftovers["running"].exists()  # a running job's folder is its worker's
    model_folder = next(media.glob("models/*"))
    assert sorted(p.name for p in model_folder.iterdir()) == ["v1"]  # the emptied v2/ went too
    assert not (media / "clips" / "999").exists()
    # Once nothing is in flight, the young file goes as well.
    sweep.sweep(min_age=0)
    assert files_under(media) == leftovers["keep"]


def test_dry_run_lists_and_removes_nothing(leftovers, settings, capsys):
    media = Path(settings.MEDIA_ROOT)
    before = files_under(media)
    call_command("sweep", "--dry-run")
    output = capsys.readouterr().out
    assert files_under(media) == before
    for name in leftovers["orphans"]:
        assert f"would remove media:{name}" in output
    assert all(path.exists() for path in leftovers["work"])
    assert '"dry_run": true' in output


def test_the_sweeper_is_scheduled_once_on_the_default_cluster(db, settings):
    sweep.ensure_sweep_schedule()
    sweep.ensure_sweep_schedule()
    schedule = Schedule.objects.get(name=sweep.SCHEDULE_NAME)
    assert schedule.func == "audioml.sweep.scheduled_sweep"
    assert schedule.minutes == settings.SWEEP_INTERVAL_MINUTES and schedule.cluster is None
    assert sweep.scheduled_sweep()["dry_run"] is False


# The feature cache -------------------------------------------------------------------------------------------


def cache_with_entries(tmp_path: Path, count: int):
    from training_app.ml.config import FeatureConfig
    from training_app.ml.features import FeatureCache

    cache = FeatureCache(tmp_path / "feature-cache", FeatureConfig(sample_rate=16000, clip_samples=8000))
    hashes = [f"{n:02x}" * 32 for n in range(count)]
    for age, content_hash in enumerate(hashes):
        cache.save(content_hash, torch.zeros(cache.features.n_mels, cache.features.n_frames))
        moment = HOUR_AGO + age
        os.utime(cache.path_for(content_hash), (moment, moment))
    return cache, hashes


def test_the_feature_cache_is_capped_least_recently_used_first(tmp_path):
    from training_app.ml.features import prune_feature_cache

    cache, hashes = cache_with_entries(tmp_path, 6)
    entry_size = cache.path_for(hashes[0]).stat().st_size
    assert cache.load(hashes[0]) is not None  # used just now: the most recent entry
    removed, freed = prune_feature_cache(tmp_path / "feature-cache", max_bytes=3 * entry_size)
    assert (removed, freed) == (3, 3 * entry_size)
    kept = [content_hash for content_hash in hashes if cache.path_for(content_hash).exists()]
    assert kept == [hashes[0], hashes[4], hashes[5]]


def test_a_full_feature_cache_is_a_miss_not_a_failure(tmp_path):
    from training_app.ml.config import FeatureConfig
    from training_app.ml.features import FeatureCache

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be: every write fails like a full disk")
    cache = FeatureCache(blocker, FeatureConfig(sample_rate=16000, clip_samples=8000))
    assert cache.save("ab" * 32, torch.zeros(4, 4)) is False
    assert cache.load("ab" * 32) is None


def test_the_sweeper_prunes_the_feature_cache_to_its_setting(db, settings):
    cache, hashes = cache_with_entries(Path(settings.WORK_DIR), 4)
    settings.FEATURE_CACHE_MAX_BYTES = cache.path_for(hashes[0]).stat().st_size
    report = sweep.sweep()
    assert report.cache_files_pruned == 3
    assert [cache.path_for(h).exists() for h in hashes] == [False, False, False, True]
