"""Load on a production-style server: concurrent uploaders, then concurrent job-status pollers.

Creates a fresh PostgreSQL database (dropped again at the end) and a temporary data folder, starts gunicorn the
way the Dockerfile does (several workers, here 4 x 4 threads) on 127.0.0.1, and drives it with the load
drivers the test suite uses (tests/ops/load.py):

1. 20 clients upload 50 distinct 0.2 s WAV clips each, one clip per request, all at once; afterwards the
   database rows and the files on disk are counted (none may be missing or extra).
2. 50 pollers ask GET /api/jobs/{id} for a running job every second (twice as often as the panel's job page)
   for 30 s, their first requests spread over the first second. Target: p95 under 100 ms.

Results and the machine description are appended to the "Load" section of docs/benchmarks.md.

    .venv/bin/python bench/bench_load.py [--database-url postgres://postgres@127.0.0.1:5432/audioml_bench_load]
        [--clients 20] [--clips 50] [--pollers 50] [--interval 1] [--seconds 30] [--workers 4] [--threads 4]
        [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.common import (  # noqa: E402
    SETUP_USER, load_note, machine_line, percentile, prepare_site, publish, run_python, site_env, timestamp,
)
from tests.ops.load import poll_load, upload_load  # noqa: E402
from tests.ops.servers import free_port, start_gunicorn, stop  # noqa: E402

SECTION = "## Load"
INTRO = (
    "Produced by `bench/bench_load.py` (tests/ops/test_load.py checks the same load for correctness in CI, "
    "without\ntimings): concurrent uploads through the API on a production-style server must lose nothing, "
    "and 50 clients\npolling a job's status must see a p95 under 100 ms."
)
TARGET_P95_MS = 100.0

SETUP = SETUP_USER + """
import hashlib
from django.utils import timezone
from datasets_app.models import Dataset
from training_app.models import TrainingJob
dataset = Dataset.objects.create_dataset("load", "bench_load.py", 16000, user)
now = timezone.now()
job = TrainingJob.objects.create(
    dataset=dataset, model_name="polled", task="classification", preset="balanced",
    config={"preset": "balanced", "epochs": 60}, status="running", phase="training", progress=42.0,
    snapshot=[{"id": i, "content_hash": f"{i:064x}", "label": "yes", "speaker": "", "audio": "", "duration": 1.0}
              for i in range(1, 201)],
    snapshot_hash=hashlib.sha256(b"bench").hexdigest(), created_by=user, started_at=now, heartbeat_at=now,
    worker="bench:1",
    epochs=[{"epoch": n, "train_loss": 1.0 / n, "val_loss": 1.1 / n, "val_accuracy": 0.5 + n / 100, "lr": 0.004,
             "seconds": 2.5} for n in range(1, 26)],
)
print(token, job.pk)
"""

COUNT = """
import django
django.setup()
from datasets_app.models import Clip
print(Clip.objects.filter(dataset__name="load").count())
"""


def postgres_version(url) -> str:
    with psycopg.connect(host=url.hostname, port=url.port or 5432, user=url.username, password=url.password,
                         dbname="postgres") as conn:
        return conn.execute("SHOW server_version").fetchone()[0].split()[0]


def recreate_database(url, drop_only: bool = False) -> None:
    name = url.path.lstrip("/")
    with psycopg.connect(host=url.hostname, port=url.port or 5432, user=url.username, password=url.password,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def latency_row(label: str, run, extra: str = "") -> str:
    values = run.latencies_ms
    errors = len(run.errors) + sum(1 for status in run.statuses if status >= 400)
    return (f"| {label} | {len(run.statuses) + len(run.errors)} | {run.seconds:.1f} | "
            f"{len(run.statuses) / run.seconds:.0f} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} | "
            f"{percentile(values, 0.99):.1f} | {max(values):.1f} | {errors} | {run.reconnects} |{extra}")


def report(meta: dict, uploads, polls) -> str:
    p95 = percentile(polls.latencies_ms, 0.95)
    verdict = "meets" if p95 < TARGET_P95_MS else "misses"
    lost = meta["expected"] - meta["rows"]
    return "\n".join([
        f"### {meta['date']}",
        "",
        f"- Machine: {meta['machine']}",
        f"- Server: gunicorn {meta['workers']} workers x {meta['threads']} threads over PostgreSQL {meta['postgres']} "
        "(same machine), loopback only; clients are threads of the benchmark process, one keep-alive connection each.",
        f"- Uploads: {meta['clients']} clients at once, each sending {meta['clips']} distinct 0.2 s 16 kHz WAV clips, one "
        "clip per `POST /api/datasets/load/clips` request.",
        f"- Polling: {meta['pollers']} clients each sending `GET /api/jobs/{{id}}` (a running job with 25 epochs of "
        f"history) every {meta['interval']:g} s for {meta['seconds']:g} s, first requests spread over the first interval.",
        "",
        "| Load | Requests | Seconds | Requests/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | Errors | Reconnects |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        latency_row(f"{meta['clients']} uploaders x {meta['clips']} clips", uploads),
        latency_row(f"{meta['pollers']} pollers, every {meta['interval']:g} s", polls),
        "",
        f"Uploads: {meta['expected']} clips sent, {meta['accepted']} accepted, {meta['rows']} rows in the database, "
        f"{meta['files']} files on disk ({'none lost' if lost == 0 and meta['files'] == meta['expected'] else f'{lost} LOST'}). "
        f"Polling p95 is {p95:.1f} ms: this {verdict} the {TARGET_P95_MS:.0f} ms target.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/audioml_bench_load",
                        help="a PostgreSQL database this script may drop and create")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--clips", type=int, default=50, help="clips per uploading client")
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a poller's requests")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the pollers poll")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    url = urlparse(args.database_url)
    if url.scheme not in ("postgres", "postgresql"):
        raise SystemExit("the load benchmark runs on PostgreSQL: pass --database-url postgres://…")

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = site_env(workdir, args.database_url)

    print(f"Preparing {url.path.lstrip('/')} and {workdir} …", flush=True)
    recreate_database(url)
    port = free_port()
    log_path = workdir / "gunicorn.log"
    server = None
    try:
        prepare_site(env)
        token, job_id = run_python(env, "-c", SETUP).split()[-2:]
        machine = f"{machine_line(cores=f'nproc {os.cpu_count()}')}; {load_note('before the run')}"
        server = start_gunicorn(env, log_path, port, workers=args.workers, threads=args.threads)
        poll_load(port, token, int(job_id), pollers=8, interval=0.05, seconds=2)  # every worker warm

        print(f"Uploads: {args.clients} clients x {args.clips} clips …", flush=True)
        uploads = upload_load(port, token, "load", clients=args.clients, clips_each=args.clips)
        accepted = sum(body["accepted"] for body in uploads.bodies if isinstance(body, dict) and "accepted" in body)
        rows = int(run_python(env, "-c", COUNT).split()[-1])
        media = workdir / "data" / "media" / "clips"
        files = sum(1 for path in media.rglob("*") if path.is_file()) if media.exists() else 0

        print(f"Polling: {args.pollers} pollers every {args.interval:g} s for {args.seconds:g} s …", flush=True)
        polls = poll_load(port, token, int(job_id), pollers=args.pollers, interval=args.interval, seconds=args.seconds)
    finally:
        if server is not None:
            stop(server)
        recreate_database(url, drop_only=True)
    meta = {
        "date": timestamp(), "machine": machine,
        "postgres": postgres_version(url), "workers": args.workers, "threads": args.threads,
        "clients": args.clients, "clips": args.clips, "pollers": args.pollers, "interval": args.interval,
        "seconds": args.seconds, "expected": args.clients * args.clips, "accepted": accepted, "rows": rows,
        "files": files,
    }
    publish(SECTION, INTRO, report(meta, uploads, polls), write=not args.no_write)


if __name__ == "__main__":
    main()
