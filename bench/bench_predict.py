"""Prediction latency through the real API: a one-second clip, warm model cache versus cold loads.

Trains a real model with training_app.ml (the default "balanced" architecture, 1-second clips; two epochs on
synthetic tones, since only the network's size matters for latency), registers it as several versions
through the registry's register_from_job, starts gunicorn on loopback (1 worker x 4 threads, so every
request meets the same process and its cache), and POSTs a one-second 16 kHz WAV to
/api/models/{name}/predict with a bearer token over one keep-alive connection:

- process cold: the first prediction after the server starts (imports torch, loads the model);
- cache miss: the first request for each other version (torch already imported; checksum, torch.export.load and
  one warm-up pass);
- warm: --requests predictions of the production version with its model cached.

Results and the machine description are appended to the prediction section of docs/benchmarks.md.

    .venv/bin/python bench/bench_predict.py [--requests 200] [--versions 6] [--database-url postgres://...]
        [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SETUP_USER, database_label, load_note, machine_line, percentile, publish, run_python, site_env, timestamp, tone,
    wav_bytes, write_wav,
)
from tests.ops.load import Connection, multipart  # noqa: E402
from tests.ops.servers import free_port, start_gunicorn, stop  # noqa: E402

SECTION = "## Prediction latency"
INTRO = (
    "Produced by `bench/bench_predict.py`: `POST /api/models/{name}/predict` with a one-second clip through a\n"
    "real gunicorn on loopback, warm model cache versus cold loads. Target: p50 under 20 ms warm."
)
TARGET_P50_MS = 20.0
MODEL = "bench-tones"

SETUP = SETUP_USER + """
import sys
from pathlib import Path
from datasets_app.models import Dataset
from registry_app.models import Alias, ModelVersion, RegisteredModel
from training_app.models import TrainingJob

artifacts, count = Path(sys.argv[1]), int(sys.argv[2])
dataset = Dataset.objects.create(name="bench-tones", created_by=user)
for number in range(count):
    job = TrainingJob.objects.create(dataset=dataset, model_name=sys.argv[3], status="succeeded", created_by=user,
                                     snapshot_hash=f"{number:064x}")
    ModelVersion.objects.register_from_job(job, artifacts)
model = RegisteredModel.objects.get(name=sys.argv[3])
Alias.point(model, "production", model.versions.get(version=1), by=user, note="benchmark")
print(token)
"""

LABELS = {"low": 300.0, "mid": 900.0, "high": 2400.0}


def inference_threads() -> int:
    """registry_app.inference.INFERENCE_THREADS, read from the source (importing it needs Django set up)."""
    import ast

    tree = ast.parse((ROOT / "registry_app" / "inference.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "INFERENCE_THREADS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("INFERENCE_THREADS not found in registry_app/inference.py")


def train_model(workdir: Path) -> tuple[Path, dict]:
    """A real model with the default architecture and 1-second clips (two epochs: latency needs no accuracy)."""
    from training_app.ml.config import TrainConfig
    from training_app.ml.data import ClipRecord
    from training_app.ml.train import Runtime, train

    clips = []
    for label, frequency in LABELS.items():
        for index in range(10):
            path = write_wav(workdir / "clips" / f"{label}-{index}.wav", tone(frequency * (1 + 0.02 * index), 1.0, seed=index))
            clips.append(ClipRecord(id=len(clips) + 1, path=path, label=label, content_hash=f"{label}{index}".ljust(64, "0")))
    cfg = TrainConfig.from_dict("balanced", {"epochs": 2, "clip_seconds": 1.0, "batch_size": 8})
    result = train(cfg, clips, workdir / "artifacts", on_progress=lambda progress: None,
                   should_stop=lambda: False, runtime=Runtime(workdir / "cache", snapshot={"clips": []}))
    return workdir / "artifacts", {"parameters": result.metrics["n_parameters"], "channels": cfg.channels,
                                   "size": (workdir / "artifacts" / "model.pt2").stat().st_size}


def predict(connection: Connection, clip: bytes, ref: str = "") -> tuple[float, dict]:
    """(milliseconds, answer) of one prediction of `clip`."""
    body, content_type = multipart({"ref": ref} if ref else {}, [("files", "one-second.wav", clip)])
    status, data, elapsed = connection.send("POST", f"/api/models/{MODEL}/predict", body, {"Content-Type": content_type})
    if status != 200:
        raise SystemExit(f"predict answered {status}: {data[:500]!r}")
    return elapsed, json.loads(data)


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99), "mean": statistics.fmean(values), "max": max(values)}


def report(results: dict, meta: dict) -> str:
    warm, server = results["warm"], results["warm_server"]
    verdict = "meets" if warm["p50"] < TARGET_P50_MS else "misses"
    lines = [
        f"### {meta['date']}",
        "",
        f"Machine: {meta['machine']}; {load_note('when the measurement started', meta['load'])}. "
        "Server: gunicorn on loopback, 1 worker x 4 threads, `DEBUG=False`, "
        f"{meta['inference_threads']} CPU thread per forward pass; one client, "
        f"one keep-alive connection, bearer token. Model: KeywordCNN ({meta['model']['channels']} channels, "
        f"{meta['model']['parameters']:,} parameters, `model.pt2` {meta['model']['size'] / 1024:.0f} KB), "
        "1-second 16 kHz WAV in (one window).",
        "",
        "| Request | n | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| warm cache (production alias) | {warm['n']} | {warm['p50']:.1f} | {warm['p95']:.1f} | {warm['p99']:.1f} | {warm['max']:.1f} |",
        f"| of which decoding + scoring (`time_ms`) | {server['n']} | {server['p50']:.1f} | {server['p95']:.1f} | {server['p99']:.1f} | {server['max']:.1f} |",
        f"| cache miss: another version, first request | {results['miss']['n']} | {results['miss']['p50']:.1f} | {results['miss']['p95']:.1f} | {results['miss']['p99']:.1f} | {results['miss']['max']:.1f} |",
        f"| of which model load (`load_ms`: read, SHA-256, torch.export.load, one warm-up pass) | {results['miss_load']['n']} | {results['miss_load']['p50']:.1f} | {results['miss_load']['p95']:.1f} | {results['miss_load']['p99']:.1f} | {results['miss_load']['max']:.1f} |",
        f"| process cold: first request after start (imports torch) | 1 | {results['first']:.0f} | | | |",
        "",
        f"Warm p50 {warm['p50']:.1f} ms {verdict} the target of {TARGET_P50_MS:.0f} ms; a cold load costs "
        f"{results['miss']['p50'] / warm['p50']:.1f}x a warm request (p50), the first request after a restart "
        f"{results['first'] / warm['p50']:.0f}x.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="warm predictions to time (default 200)")
    parser.add_argument("--versions", type=int, default=6, help="versions to register; all but one are cold loads")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.versions < 2:
        parser.error("--versions must be at least 2 (one warm, the others cold loads)")

    workdir = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    port = free_port()
    env = site_env(workdir, args.database_url)

    print(f"Training a model in {workdir} …", flush=True)
    artifacts, model_info = train_model(workdir)
    run_python(env, "manage.py", "migrate", "-v", "0")
    token = run_python(env, "-c", SETUP, str(artifacts), str(args.versions), MODEL).split()[-1]
    clip = wav_bytes(tone(900.0, 1.0, seed=99))

    log_path = workdir / "gunicorn.log"
    # Prediction needs only the database and the media folder: a 503 from /api/health (a failing check) is "up" here.
    server = start_gunicorn(env, log_path, port, workers=1, threads=4, timeout=300, up_statuses=(200, 503))
    try:
        client = Connection(port, token)
        load = os.getloadavg()
        first, body = predict(client, clip)
        assert body["cached"] is False and body["version"] == 1, body
        print(f"First request after start: {first:.0f} ms (model load {body['load_ms']:.0f} ms)", flush=True)
        miss, miss_load = [], []
        for number in range(2, args.versions + 1):
            elapsed, body = predict(client, clip, ref=f"v{number}")
            assert body["cached"] is False and body["version"] == number, body
            miss.append(elapsed)
            miss_load.append(body["load_ms"])
        for _ in range(10):
            predict(client, clip)
        warm, warm_server = [], []
        for _ in range(args.requests):
            elapsed, body = predict(client, clip)
            assert body["cached"] is True and body["ref"] == "production", body
            warm.append(elapsed)
            warm_server.append(body["results"][0]["time_ms"])
        print(f"Warm p50 {percentile(warm, 0.5):.1f} ms, cold-version p50 {percentile(miss, 0.5):.0f} ms", flush=True)
    finally:
        stop(server)

    results = {"first": first, "miss": summary(miss), "miss_load": summary(miss_load), "warm": summary(warm),
               "warm_server": summary(warm_server)}
    import torch  # already loaded by train_model

    machine = machine_line(f"torch {torch.__version__} (CPU)", database_label(args.database_url))
    meta = {"date": timestamp(), "machine": machine,
            "model": model_info, "load": load, "inference_threads": inference_threads()}
    publish(SECTION, INTRO, report(results, meta), write=not args.no_write)


if __name__ == "__main__":
    main()
