"""The sweeper: removes what a crash (a SIGKILLed web or worker process, a lost machine) leaves without a row.

Files are written before their rows (see the README's backups), so a process killed in between leaves a file no
row references; nothing else ever removes it. The sweeper removes, once they are older than
SWEEP_MIN_AGE_SECONDS (longer than any upload, import or registration takes, so work in flight is never touched):

- media files under `clips/` that no clip row references, under `models/` that no version's artifact list
  names, and under `predictions/` that no logged prediction keeps (with the folders they leave empty);
- `.part` files under the media storage's `.incoming/` (a clip being moved into place) and readiness probes;
- Django's temporary upload files (FILE_UPLOAD_TEMP_DIR), zip extraction folders (`work/ingest/archive-*`) and
  the decoder's temporary files;

and, whatever their age, the working folders of jobs that are finished or gone, and it prunes the feature
cache to FEATURE_CACHE_MAX_BYTES and the clip cache (clips fetched from object storage) to CLIP_CACHE_MAX_BYTES.
On object storage the media listing comes from the bucket (sizes and times included); there are no folders.
It runs when the app starts (`scripts/run.sh` and the Docker image run `manage.py sweep`), every
SWEEP_INTERVAL_MINUTES on the default worker cluster, before each training job (the job folders and the caches
live on the training machine's local disk), and on demand with `manage.py sweep [--dry-run]`.
`manage.py gc [--dry-run]` runs the media half alone and reports it by kind.

Listing the storage costs one request per 1,000 objects on a bucket (a walk of every folder on disk), so the
panel's *Storage clean-up* page never lists it when visited: it shows the last result remembered in the cache
(`scan_storage`, run when the user asks, on a worker of the default cluster so that a long listing never holds a web
request: `queue_scan` queues at most one at a time and the page polls until it is done or failed; the page's
clean-up runs on a worker the same way, `queue_clean_up`, never beside a scan; every real
clean-up, whether the page's, the API's, `manage.py gc` or the sweeper's, replaces it with what it left, nothing
older than the minimum age), with its time.

Dataset exports are never stored (they stream from a temporary file that is gone once sent), and folders other
than those listed in MEDIA_FOLDERS (another feature's files) are never touched.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

logger = logging.getLogger("audioml.sweep")

SCHEDULE_NAME = "sweep: remove files without rows"
MEDIA_FOLDERS = ("clips", "models", "predictions")
INCOMING = ".incoming"
PROBES = ".ready-probe"
# What `manage.py gc` reports, by the first folder of a storage name.
GC_KINDS = {"clips": "Clip audio", "models": "Model artifacts", "predictions": "Logged prediction audio",
            INCOMING: "Interrupted uploads", PROBES: "Readiness probes"}
SCAN_CACHE_KEY = "audioml:storage-scan"
SCAN_RUNNING_KEY = "audioml:storage-scan-running"  # the queued or running scan (queue_scan)
SCAN_FAILED_KEY = "audioml:storage-scan-failed"  # the last scan that failed, until the next is queued
SCAN_TASK = "audioml.sweep.run_queued_scan"
CLEAN_UP_TASK = "audioml.sweep.run_queued_clean_up"
CLEAN_UP_DONE_KEY = "audioml:storage-clean-up-done"  # what the page's last clean-up removed, until the next is queued
SCAN_LISTED_FILES = 200  # file names kept per kind (the page lists these; `manage.py gc --dry-run` lists all)


@dataclass
class SweepReport:
    dry_run: bool
    removed: list[str] = field(default_factory=list)
    media_files: list[tuple[str, int]] = field(default_factory=list)  # (storage name, bytes) of removed media
    freed_bytes: int = 0
    kept_young: int = 0  # unreferenced but recent: possibly an upload in flight
    cache_files_pruned: int = 0

    def remove(self, what: str, size: int) -> None:
        self.removed.append(what)
        self.freed_bytes += size

    @staticmethod
    def kind_of(name: str) -> str:
        return name.split("/", 1)[0]

    def by_kind(self) -> list[dict]:
        """One row per kind `manage.py gc` reports (kinds with nothing included): label, files and bytes."""
        summary = self.as_gc_dict()["kinds"]
        return [{"kind": kind, "label": GC_KINDS.get(kind, kind), "files": entry["files"], "count": len(entry["files"]),
                 "bytes": entry["bytes"]} for kind, entry in summary.items()]

    def as_gc_dict(self) -> dict:
        """The media part of the report, by kind (for `manage.py gc --json`)."""
        kinds = {kind: {"files": [], "bytes": 0} for kind in GC_KINDS}
        for name, size in self.media_files:
            entry = kinds.setdefault(self.kind_of(name), {"files": [], "bytes": 0})
            entry["files"].append(name)
            entry["bytes"] += size
        return {"dry_run": self.dry_run, "removed": len(self.media_files),
                "freed_bytes": sum(size for _, size in self.media_files), "kept_young": self.kept_young,
                "kinds": kinds}

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "removed": len(self.removed),
            "freed_bytes": self.freed_bytes,
            "kept_young": self.kept_young,
            "cache_files_pruned": self.cache_files_pruned,
        }


def sweep(*, dry_run: bool = False, min_age: float | None = None, media: bool = True) -> SweepReport:
    """Everything the module docstring lists; `media=False` sweeps only this machine's work folder."""
    report = SweepReport(dry_run=dry_run)
    cutoff = time.time() - (settings.SWEEP_MIN_AGE_SECONDS if min_age is None else min_age)
    if media:
        sweep_media(report, cutoff)
        if not dry_run:
            _remember_clean_up(report, min_age, "the sweeper")
    sweep_work_folder(report, cutoff)
    if report.removed:
        logger.info(
            "Sweep%s: %d removed (%d bytes), %d recent kept, %d cache files pruned",
            " (dry run)" if dry_run else "", len(report.removed), report.freed_bytes, report.kept_young,
            report.cache_files_pruned,
        )
    return report


def collect_garbage(*, dry_run: bool = False, min_age: float | None = None, by=None) -> SweepReport:
    """Only the media storage's files without rows (what `manage.py gc` and the panel's *Storage* page run).

    With `by` (an audioml.audit.Actor), a run that removed files records one `storage.gc` event: how many files
    and bytes of each kind, and the minimum age used. A dry run changes nothing and records nothing."""
    report = SweepReport(dry_run=dry_run)
    age = settings.SWEEP_MIN_AGE_SECONDS if min_age is None else min_age
    sweep_media(report, time.time() - age)
    if not dry_run:
        _remember_clean_up(report, age, _who(by))
    if report.media_files:
        logger.info("gc%s: %d files without rows removed (%d bytes), %d recent kept", " (dry run)" if dry_run else "",
                    len(report.media_files), report.freed_bytes, report.kept_young)
    if by is not None and not dry_run and report.media_files:
        from audioml.audit import Actor, record

        summary = report.as_gc_dict()
        record("storage.gc", by=Actor.of(by), object_type="storage", object_repr="media storage", changes={
            "files": [None, summary["removed"]], "bytes": [None, summary["freed_bytes"]],
            "by_kind": [None, {kind: len(entry["files"])
                               for kind, entry in summary["kinds"].items() if entry["files"]}],
            "min_age_seconds": [None, age],
        })
    return report


def scan_storage(by=None) -> dict:
    """The Storage page's scan: what a clean-up would remove now (a dry run at SWEEP_MIN_AGE_SECONDS), remembered
    with its time until the next scan or clean-up; returns what `last_scan` will."""
    return _scan(f"scanned by {_who(by)}")


def _scan(via: str) -> dict:
    started = time.monotonic()
    report = collect_garbage(dry_run=True)
    return _remember(report, via, time.monotonic() - started)


def queue_scan(by=None) -> tuple[dict, bool]:
    """Queue the Storage page's scan on the default worker cluster, unless a scan or a clean-up is already queued
    or running: (that one's `scan_in_progress`, whether this call queued it)."""
    return _queue("scan", by, SCAN_TASK)


def queue_clean_up(by=None, shown: int | None = None) -> tuple[dict, bool]:
    """Queue the Storage page's clean-up (collect_garbage, audited as `by`) on the default worker cluster, as
    queue_scan queues a scan and never beside one; `shown`: how many files the page had shown."""
    from audioml.audit import Actor

    actor = Actor.of(by) or Actor()
    user_id = actor.user.pk if actor.user is not None else None
    return _queue("clean-up", by, CLEAN_UP_TASK, user_id, actor.ip_address, actor.request_id, shown)


def _queue(action: str, by, task: str, *args) -> tuple[dict, bool]:
    """One marker in the shared cache, added atomically, is what keeps a second click (or a second user) from
    queueing a second listing of the bucket, whether to scan it or to clean it up."""
    from django.core.cache import cache
    from django.utils import timezone
    from django_q.tasks import async_task

    running = scan_in_progress()
    if running is not None and not running["stale"]:
        return running, False
    if running is not None:  # lost (its worker died, or none ever took it): a new scan replaces it
        cache.delete(SCAN_RUNNING_KEY)
    who = _who(by)
    marker = {"token": uuid.uuid4().hex, "queued_at": timezone.now(), "started_at": None, "by": who,
              "action": action}
    if not cache.add(SCAN_RUNNING_KEY, marker, timeout=None):
        return scan_in_progress() or {**marker, "waited": 0.0, "stale": False}, False
    cache.delete_many([SCAN_FAILED_KEY, CLEAN_UP_DONE_KEY])
    try:
        async_task(task, marker["token"], who, *args, task_name=f"storage-{action}")
    except Exception:
        cache.delete(SCAN_RUNNING_KEY)
        raise
    return scan_in_progress() or {**marker, "waited": 0.0, "stale": False}, True


def scan_in_progress() -> dict | None:
    """The queued or running scan (`queued_at`, `started_at` or None while no worker took it, `by`, `waited`
    seconds since it was queued), or None.
    `stale` once it is older than SCAN_GIVE_UP_SECONDS: a worker stopped without saying, or none is running."""
    from django.core.cache import cache
    from django.utils import timezone

    try:
        marker = cache.get(SCAN_RUNNING_KEY)
    except Exception:  # noqa: BLE001 - no cache table yet: nothing running
        logger.exception("The storage scan in progress could not be read from the cache")
        return None
    if marker is None:
        return None
    waited = (timezone.now() - marker["queued_at"]).total_seconds()
    return {"action": "scan", **marker, "waited": waited, "stale": waited > scan_give_up_seconds()}


def failed_scan() -> dict | None:
    """The last scan that failed (`at`, `by`, `error`), until the next one is queued; a scan given up on
    (scan_in_progress's `stale`) counts as failed."""
    from django.core.cache import cache

    running = scan_in_progress()
    if running is not None and running["stale"]:
        return {"at": running["queued_at"], "by": running["by"], "action": running["action"], "error": (
            f"no worker finished it within {scan_give_up_seconds() // 60} minutes of it being queued "
            f"({'a worker took it and stopped without a result' if running['started_at'] else 'no worker took it'})"
            ": check that the workers run (manage.py qcluster)")}
    try:
        return cache.get(SCAN_FAILED_KEY)
    except Exception:  # noqa: BLE001
        logger.exception("The last failed storage scan could not be read from the cache")
        return None


def scan_give_up_seconds() -> int:
    """How long the page waits for a queued scan: the default cluster's task timeout (a worker stops a task
    running longer) and a minute for a worker to take it."""
    return int(settings.Q_CLUSTER.get("timeout") or 600) + 60


def run_queued_scan(token: str, who: str) -> dict:
    """The django-q2 entry point of the Storage page's scan (queue_scan): the scan, remembered as `scan_storage`
    remembers it, or the failure remembered for the page (and raised again, so the task is a failure too)."""
    scan = _run_queued(token, who, "scan", lambda: _scan(f"scanned by {who}"))
    return {key: value for key, value in scan.items() if key != "kinds"}


def run_queued_clean_up(token: str, who: str, user_id: int | None, ip_address: str | None, request_id: str,
                        shown: int | None) -> dict:
    """The django-q2 entry point of the Storage page's clean-up (queue_clean_up): `manage.py gc` audited as the
    user who confirmed it, from their address and request; what it removed is remembered for the page."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.utils import timezone

    from audioml.audit import Actor

    user = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    actor = Actor(user=user, ip_address=ip_address, request_id=request_id)
    report = _run_queued(token, who, "clean-up", lambda: collect_garbage(by=actor))
    done = {"at": timezone.now(), "by": who, "removed": len(report.media_files), "freed_bytes": report.freed_bytes,
            "shown": shown}
    cache.set(CLEAN_UP_DONE_KEY, done, timeout=None)
    return done


def _run_queued(token: str, who: str, action: str, work):
    from django.core.cache import cache
    from django.utils import timezone

    marker = cache.get(SCAN_RUNNING_KEY)
    if marker is not None and marker["token"] == token:
        cache.set(SCAN_RUNNING_KEY, {**marker, "started_at": timezone.now()}, timeout=None)
    try:
        return work()
    except Exception as error:
        logger.exception("The storage %s queued by %s failed", action, who)
        cache.set(SCAN_FAILED_KEY, {"at": timezone.now(), "by": who, "action": action,
                                    "error": f"{type(error).__name__}: {error}".rstrip(".")}, timeout=None)
        raise
    finally:
        marker = cache.get(SCAN_RUNNING_KEY)
        if marker is not None and marker["token"] == token:
            cache.delete(SCAN_RUNNING_KEY)


def last_clean_up() -> dict | None:
    """What the page's last clean-up removed (`at`, `by`, `removed`, `freed_bytes`, `shown`), until the next scan
    or clean-up is queued."""
    from django.core.cache import cache

    try:
        return cache.get(CLEAN_UP_DONE_KEY)
    except Exception:  # noqa: BLE001
        logger.exception("The last storage clean-up could not be read from the cache")
        return None


def last_scan() -> dict | None:
    """The last remembered scan (or what the last clean-up left), or None: `at` (when), `via` (who or what),
    `seconds` (how long the listing took; None after a clean-up), `kinds` (manage.py gc's kinds, each with `count`,
    `bytes`, the first SCAN_LISTED_FILES `files` and how many `more`), `count`, `freed_bytes` and `kept_young`."""
    from django.core.cache import cache

    try:
        return cache.get(SCAN_CACHE_KEY)
    except Exception:  # noqa: BLE001 - no cache table yet: as if never scanned
        logger.exception("The last storage scan could not be read from the cache")
        return None


def _remember(report: SweepReport, via: str, seconds: float | None) -> dict:
    from django.core.cache import cache
    from django.utils import timezone

    kinds = [{**row, "files": row["files"][:SCAN_LISTED_FILES], "more": max(0, row["count"] - SCAN_LISTED_FILES)}
             for row in report.by_kind()]
    scan = {"at": timezone.now(), "via": via, "seconds": seconds, "kinds": kinds, "count": len(report.media_files),
            "freed_bytes": sum(size for _, size in report.media_files), "kept_young": report.kept_young}
    try:
        cache.set(SCAN_CACHE_KEY, scan, timeout=None)
    except Exception:  # noqa: BLE001 - a clean-up never fails for want of a cache
        logger.exception("The storage scan could not be remembered in the cache")
    return scan


def _remember_clean_up(report: SweepReport, min_age: float | None, via: str) -> None:
    """After a real clean-up, nothing it could remove is left: remembered as an empty scan when it used at least
    the page's minimum age's reach (a clean-up with a longer minimum age leaves files the page would list)."""
    from django.core.cache import cache

    if min_age is not None and min_age > settings.SWEEP_MIN_AGE_SECONDS:
        try:
            cache.delete(SCAN_CACHE_KEY)
        except Exception:  # noqa: BLE001
            logger.exception("The storage scan could not be forgotten")
        return
    left = SweepReport(dry_run=True, kept_young=report.kept_young)
    removed = len(report.media_files)
    _remember(left, f"cleaned up by {via}, which removed {removed} file{'s' if removed != 1 else ''}", None)


def _who(by) -> str:
    from audioml.audit import Actor

    actor = Actor.of(by)
    if actor is None:
        return "the system"
    return actor.via if actor.via and actor.user is None else str(actor)


def scheduled_sweep() -> dict:
    """The django-q2 entry point (every SWEEP_INTERVAL_MINUTES on the default cluster)."""
    return sweep().as_dict()


# Media storage ------------------------------------------------------------------------------------------------


def sweep_media(report: SweepReport, cutoff: float) -> None:
    # Listed before the rows are read: a row committed meanwhile still protects its file.
    candidates, young = [], []
    for folder in MEDIA_FOLDERS:
        for name, size, modified in _stored_files(folder):
            (young if modified > cutoff else candidates).append(name if modified > cutoff else (name, size))
    referenced = referenced_media()
    # Only a recent file without a row is kept for its age (an upload in flight); a new clip's audio is not.
    report.kept_young += sum(1 for name in young if name not in referenced)
    emptied: set[str] = set()
    for name, size in candidates:
        if name not in referenced:
            _delete_stored(report, name, size)
            emptied.add(name.rsplit("/", 1)[0])
    for folder in (INCOMING, PROBES):
        for name, size, modified in _stored_files(folder):
            if not _young(report, modified, cutoff):
                _delete_stored(report, name, size)
    if not report.dry_run:
        for folder in MEDIA_FOLDERS:
            _remove_empty_folders(folder, cutoff, emptied)


def referenced_media() -> set[str]:
    """Every media file a row points at: clip audio (trashed clips too), every version's artifacts and the audio
    the prediction log keeps."""
    from datasets_app.models import Clip
    from registry_app.models import ModelVersion, PredictionLog

    names = set(Clip.objects.values_list("audio", flat=True))
    names.update(PredictionLog.objects.exclude(audio="").values_list("audio", flat=True))
    for artifacts in ModelVersion.objects.values_list("artifacts", flat=True).iterator():
        names.update(entry["path"] for entry in artifacts or [] if entry.get("path"))
    return names


def _stored_files(folder: str) -> Iterator[tuple[str, int, float]]:
    """(name, size, modification time) of every file under a storage folder (on object storage from the listing
    itself, one request per 1000 objects)."""
    from audioml.storage import walk

    yield from walk(folder)


def _young(report: SweepReport, modified: float, cutoff: float) -> bool:
    if modified > cutoff:
        report.kept_young += 1
        return True
    return False


def _delete_stored(report: SweepReport, name: str, size: int) -> None:
    report.remove(f"media:{name}", size)
    report.media_files.append((name, size))
    if report.dry_run:
        return
    try:
        default_storage.delete(name)
    except OSError:
        logger.exception("Sweep could not remove %s", name)


def _remove_empty_folders(folder: str, cutoff: float, emptied: set[str]) -> None:
    """Local storage keeps empty folders (an emptied `models/<name>/v3/`); object storages have none. An empty
    folder goes when it is old or when this sweep emptied it (or a folder below it)."""
    try:
        root = Path(default_storage.path(folder))
        touched = {Path(default_storage.path(name)) for name in emptied}
    except NotImplementedError:
        return
    if not root.is_dir():
        return
    touched |= {parent for path in touched for parent in path.parents}
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            if path in touched or path.stat().st_mtime <= cutoff:
                path.rmdir()  # only succeeds when empty
        except OSError:
            pass


# This machine's work folder and temporary files -------------------------------------------------------------


def sweep_work_folder(report: SweepReport, cutoff: float) -> None:
    work = Path(settings.WORK_DIR)
    upload_temp = Path(settings.FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir())
    for path in _entries(upload_temp, "*.upload*"):
        _delete_path(report, path, cutoff)
    for path in _entries(work / "ingest", "archive-*"):
        _delete_path(report, path, cutoff)
    for path in _entries(Path(tempfile.gettempdir()), "audioml-decode-*"):
        _delete_path(report, path, cutoff)
    for path in finished_job_folders(work / "jobs"):
        _delete_path(report, path, cutoff=None)
    removed, freed = prune_cache(dry_run=report.dry_run)
    report.cache_files_pruned += removed
    report.freed_bytes += freed
    removed, freed = prune_clip_cache(dry_run=report.dry_run)
    report.cache_files_pruned += removed
    report.freed_bytes += freed


def finished_job_folders(jobs_root: Path) -> list[Path]:
    """Working folders (and half-written exports `<id>.tmp-*`) of jobs that are finished or no longer exist."""
    from training_app.models import TrainingJob

    folders: dict[int, list[Path]] = {}
    for path in _entries(jobs_root, "*"):
        job_id = path.name.split(".", 1)[0]
        if job_id.isdigit():
            folders.setdefault(int(job_id), []).append(path)
    if not folders:
        return []
    active = set(
        TrainingJob.objects.filter(
            pk__in=folders, status__in=(TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING)
        ).values_list("pk", flat=True)
    )
    return [path for job_id, paths in sorted(folders.items()) if job_id not in active for path in paths]


def prune_cache(dry_run: bool = False) -> tuple[int, int]:
    from training_app.ml.features import prune_feature_cache

    cache_dir = Path(settings.WORK_DIR) / "feature-cache"
    if dry_run or not cache_dir.is_dir():
        return 0, 0
    return prune_feature_cache(cache_dir, settings.FEATURE_CACHE_MAX_BYTES)


def prune_clip_cache(dry_run: bool = False) -> tuple[int, int]:
    """The clips this machine fetched from object storage (audioml/storage.py), kept under CLIP_CACHE_MAX_BYTES."""
    from audioml.storage import CLIP_CACHE
    from training_app.ml.features import prune_feature_cache

    cache_dir = Path(settings.WORK_DIR) / CLIP_CACHE
    if dry_run or not cache_dir.is_dir():
        return 0, 0
    return prune_feature_cache(cache_dir, settings.CLIP_CACHE_MAX_BYTES)


def _entries(folder: Path, pattern: str) -> list[Path]:
    try:
        return sorted(folder.glob(pattern)) if folder.is_dir() else []
    except OSError:
        return []


def _delete_path(report: SweepReport, path: Path, cutoff: float | None) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if cutoff is not None and _young(report, info.st_mtime, cutoff):
        return
    size = _size_of(path) if path.is_dir() else info.st_size
    report.remove(f"file:{path}", size)
    if report.dry_run:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _size_of(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


def ensure_sweep_schedule(using: str = "default", **kwargs) -> None:
    """Schedule the sweeper on the default cluster (idempotent; after every migrate)."""
    from django.db import connections
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    Schedule.objects.using(using).update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "audioml.sweep.scheduled_sweep",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.SWEEP_INTERVAL_MINUTES,
            "repeats": -1,
            "cluster": None,
        },
    )
