"""What object storage costs: ingest, training and a first model load with S3 storage beside local files.

Both runs happen in the same invocation on the same machine, each in a fresh child process with its own
temporary data folder and SQLite database: `local` keeps media in MEDIA_ROOT, `s3` sets AWS_STORAGE_BUCKET_NAME
and friends to a fresh bucket on a moto_server on loopback (the tests' harness, tests/ops/servers.py). Each run:

1. imports a zip of one-second WAVs (`import_path`: decode, check, hash, store, rows), and checks the clip count
   in the rows and in the storage;
2. runs two training jobs on the same clips with `tasks.run_training_job` (the worker's code path: fetch clips,
   features, training, export, registration into the storage); the second finds the clips in the machine's
   clip cache (and the features in the feature cache);
3. loads the registered model for prediction once (read model.pt2 from the storage, SHA-256, torch.export.load).

    .venv/bin/python bench/bench_storage.py [--clips 200] [--epochs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import BENCHMARKS, distinct_tone, machine_line, publish, timestamp, wav_bytes  # noqa: E402

SECTION = "## Object storage (S3) beside local files"
INTRO = (
    "Produced by `bench/bench_storage.py`: the same ingest, two training jobs and a first model load, once with\n"
    "media in a local folder and once in an S3 bucket (`AWS_STORAGE_BUCKET_NAME`), in one run on one machine.\n"
    "The S3 endpoint is moto_server on loopback (a Python S3 server holding objects in memory): the figures show\n"
    "what the extra requests and copies cost, not a network's latency; a bucket across a network adds its round\n"
    "trips (about one per stored clip, one per fetched clip, a few per artifact)."
)
LABELS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def build_zip(path: Path, count: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(count):
            data = wav_bytes(distinct_tone(index, 16000), 16000)
            archive.writestr(f"{LABELS[index % len(LABELS)]}/{index:05d}.wav", data)


def child(args) -> dict:
    """One storage's run, in a process of its own (settings are read once per process)."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from audioml import storage as media
    from datasets_app.importing import import_path
    from datasets_app.models import Clip, Dataset
    from registry_app import inference
    from registry_app.models import ModelVersion
    from training_app import tasks
    from training_app.models import TrainingJob

    user = get_user_model().objects.create_superuser("bench", password=None)
    archive = Path(os.environ["AUDIOML_DATA_DIR"]) / "clips.zip"
    build_zip(archive, args.clips)
    result: dict = {"storage": media.describe() if not media.is_local() else "local folder"}

    dataset = Dataset.objects.create_dataset("bench", sample_rate=16000)
    started = time.perf_counter()
    report = import_path(dataset, archive)
    result["ingest_seconds"] = time.perf_counter() - started
    stored = {name for name, _, _ in media.walk(f"clips/{dataset.pk}")}
    rows = set(Clip.objects.filter(dataset=dataset).values_list("audio", flat=True))
    if report.rejected or len(report.accepted) != args.clips or rows != stored:
        raise SystemExit(f"ingest: {len(report.accepted)} accepted, {len(rows)} rows, {len(stored)} stored files")
    result["clips"] = len(rows)
    result["megabytes"] = sum(size for _, size, _ in media.walk(f"clips/{dataset.pk}")) / 1e6

    overrides = {"epochs": args.epochs, "channels": 8, "clip_seconds": 1.0, "batch_size": 32,
                 "early_stopping_patience": 0}
    for number in (1, 2):
        job = TrainingJob.objects.create_job(dataset, f"bench-{number}", "quick", overrides, user)
        started = time.perf_counter()
        status = tasks.run_training_job(job.pk)
        seconds = time.perf_counter() - started
        if status != "succeeded":
            job.refresh_from_db()
            raise SystemExit(f"job {number}: {status}: {job.error}")
        fetched = job.logs.filter(message__startswith="Clips: ").values_list("message", flat=True).first() or ""
        match = re.search(r"(\d+) fetched from the object storage \(([\d.]+) MB in ([\d.]+) s\)", fetched)
        result[f"job{number}"] = {
            "seconds": seconds,
            "fetched": int(match.group(1)) if match else None,
            "fetched_mb": float(match.group(2)) if match else None,
            "fetch_seconds": float(match.group(3)) if match else None,
        }
    version = ModelVersion.objects.get(model__name="bench-2")
    started = time.perf_counter()
    inference.cache.get(version)
    result["load_seconds"] = time.perf_counter() - started
    return result


def run_child(storage: str, args, extra_env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-storage-{storage}-") as tmp:
        out = Path(tmp) / "result.json"
        env = {
            **os.environ, **extra_env,
            "DJANGO_SETTINGS_MODULE": "audioml.settings", "AUDIOML_DATA_DIR": str(Path(tmp) / "data"),
            "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, __file__, "--child", str(out), "--clips", str(args.clips),
                   "--epochs", str(args.epochs)]
        subprocess.run(command, cwd=ROOT, env=env, check=True)
        return json.loads(out.read_text())


def cell(value: float | None, unit: str = "s") -> str:
    return "—" if value is None else f"{value:.1f} {unit}"


def entry(args, results: dict[str, dict], loads: list[tuple[float, ...]]) -> str:
    local, s3 = results["local"], results["s3"]

    def fetched(job: dict) -> str:
        if job["fetched"] is None:
            return "read in place"
        return f"{job['fetched']} fetched ({job['fetched_mb']:.1f} MB in {job['fetch_seconds']:.1f} s)"

    def ratio(key: str, nested: str | None = None) -> str:
        a = local[key][nested] if nested else local[key]
        b = s3[key][nested] if nested else s3[key]
        return f"{b / a:.2f}x"

    rows = [
        (f"ingest: zip of {local['clips']} one-second WAVs ({local['megabytes']:.1f} MB stored)",
         cell(local["ingest_seconds"]), cell(s3["ingest_seconds"]), ratio("ingest_seconds")),
        ("ingest rate", f"{local['clips'] / local['ingest_seconds']:.0f} clips/s",
         f"{s3['clips'] / s3['ingest_seconds']:.0f} clips/s", ""),
        ("training job 1: clips, features, training, export, registration", cell(local["job1"]["seconds"]),
         cell(s3["job1"]["seconds"]), ratio("job1", "seconds")),
        ("  clips for job 1", fetched(local["job1"]), fetched(s3["job1"]), ""),
        ("training job 2 on the same clips (clip and feature caches warm)", cell(local["job2"]["seconds"]),
         cell(s3["job2"]["seconds"]), ratio("job2", "seconds")),
        ("  clips for job 2", fetched(local["job2"]), fetched(s3["job2"]), ""),
        ("first prediction load: model.pt2 read + SHA-256 + torch.export.load", cell(local["load_seconds"]),
         cell(s3["load_seconds"]), ratio("load_seconds")),
    ]
    lines = [
        f"### {timestamp()}: {local['clips']} clips, {args.epochs} epochs",
        "",
        f"- Machine: {machine_line()}",
        f"- Load average {loads[0][0]:.1f} / {loads[0][1]:.1f} (1 / 5 min) before and {loads[1][0]:.1f} / "
        f"{loads[1][1]:.1f} after the run, on a machine shared with other work: compare the two columns, not "
        "these figures with other sections",
        f"- S3: {s3['storage']}; SQLite databases, `quick` preset with {args.epochs} epochs, 8 channels, "
        "one-second clips",
        "",
        "| measure | local folder | S3 (moto_server) | S3 / local |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {name} | {a} | {b} | {r} |" for name, a, b, r in rows],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.child).write_text(json.dumps(child(args)))
        return

    from tests.ops.servers import create_bucket, s3_env, start_moto_server, stop

    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-moto-") as tmp:
        moto, endpoint = start_moto_server(Path(tmp) / "moto_server.log")
        try:
            bucket = f"bench-{uuid.uuid4().hex[:12]}"
            create_bucket(endpoint, bucket)
            results = {"local": run_child("local", args, {}), "s3": run_child("s3", args, s3_env(endpoint, bucket))}
        finally:
            stop(moto)
    loads.append(os.getloadavg())
    publish(SECTION, INTRO, entry(args, results, loads), write=not args.no_write)
    print(f"See {BENCHMARKS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
