"""Helpers shared by the benchmark scripts: the machine, docs/benchmarks.md, a throwaway site and its data.

Servers (gunicorn, qcluster) are started and stopped with the tests' harness, tests/ops/servers.py, and audio is
made with the tests' generators, tests/audio.py."""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.audio import encode, tone, wav_bytes, write_wav  # noqa: F401  (the benchmarks' audio, shared with the tests)
from tests.ops.load import percentile  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCHMARKS = ROOT / "docs" / "benchmarks.md"


# The machine


def cpu_model(unknown: str = "unknown CPU") -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return unknown


def memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def nproc() -> str:
    """What `nproc` says (the CPUs this process may use), else the machine's count."""
    return subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip() or str(os.cpu_count())


def machine_line(*extras: str, cores: str = "") -> str:
    """"CPU, N cores, RAM, OS, Python" and the extras, comma-separated, for a report's Machine line."""
    return ", ".join([
        cpu_model(), cores or f"{os.cpu_count()} cores", f"{memory_gib():.0f} GB RAM",
        f"{platform.system()} {platform.release()}", f"Python {platform.python_version()}", *extras,
    ])


def machine_facts() -> dict[str, str]:
    return {"nproc": nproc(), "cpu": cpu_model("unknown"), "memory": f"{memory_gib():.1f} GiB",
            "python": platform.python_version()}


def load_note(when: str, load: tuple[float, ...] | None = None) -> str:
    one, five = (load or os.getloadavg())[:2]
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) {when}, on a machine shared with other work"


class Resources:
    """Wall time, this process's CPU time (user + system, its children included) and the load average over a run.

    ``with Resources() as used: ...`` then ``used.line()``: the figures the training benchmarks record, so that a
    time taken on a shared machine can be read beside how busy the machine was.
    """

    def __enter__(self) -> Resources:
        self.load_before = os.getloadavg()
        self.started = time.perf_counter()
        self.cpu_started = _cpu_seconds()
        return self

    def __exit__(self, *exc_info) -> None:
        self.wall_seconds = time.perf_counter() - self.started
        self.cpu_seconds = _cpu_seconds() - self.cpu_started
        self.load_after = os.getloadavg()

    def line(self) -> str:
        return (f"wall {self.wall_seconds:.0f} s, process CPU {self.cpu_seconds:.0f} s "
                f"({self.cpu_seconds / max(self.wall_seconds, 1e-9):.2f} cores busy on average); load average "
                f"{self.load_before[0]:.1f} / {self.load_before[1]:.1f} (1 / 5 min) at the start and "
                f"{self.load_after[0]:.1f} / {self.load_after[1]:.1f} at the end, on a machine shared with other work")


def train_measured(cfg, clips, work_dir: Path, threads: int, *metrics: tuple[str, str]):
    """Train in this process as a worker does, printing each epoch (losses and each of ``metrics``: (history key,
    title), when the epoch has it).

    Returns (TrainResult, Resources)."""
    from training_app.ml.train import Runtime, train

    def on_progress(progress) -> None:
        if progress.epoch:
            epoch = progress.epoch
            figures = "".join(f"  {title} {epoch[key]:.4f}" for key, title in metrics if epoch.get(key) is not None)
            print(f"  epoch {epoch['epoch']:3d}  train {epoch['train_loss']:.4f}  val {epoch['val_loss']:.4f}"
                  f"{figures}  {epoch['seconds']:.1f} s", flush=True)

    with Resources() as used:
        result = train(cfg, clips, work_dir / "model", on_progress, lambda: False,
                       Runtime(work_dir / "cache", None, lambda level, message: print(f"  [{level}] {message}"), threads))
    return result, used


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def database_label(database_url: str) -> str:
    return "PostgreSQL" if database_url.startswith("postgres") else "SQLite (WAL)"


def timestamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


# docs/benchmarks.md


def publish(section: str, intro: str, entry: str, write: bool) -> None:
    """Print the entry and, when `write`, append it to its section (see append_entry)."""
    print(entry)
    if write:
        append_entry(section, intro, entry)
        print(f"Appended to {BENCHMARKS.relative_to(ROOT)}")


def append_entry(section: str, intro: str, entry: str) -> None:
    """Add `entry` at the end of `section` ("## Name"), creating the section with `intro` when it is missing."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\n"
    if text.startswith(f"{section}\n"):
        start = 0
    else:
        start = text.find(f"\n{section}\n")
        start = start + 1 if start != -1 else -1
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + f"{section}\n\n{intro}\n\n" + entry
    else:
        following = text.find("\n## ", start + len(section))
        end = len(text) if following == -1 else following + 1
        text = text[:end].rstrip("\n") + "\n\n" + entry + ("\n" + text[end:] if following != -1 else "")
    BENCHMARKS.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS.write_text(text)


def replace_section(section: str, text: str) -> None:
    """Put `text` (which starts with the `section` heading) in place of that section, or at the end."""
    current = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    marker = f"\n{section}\n"
    if current.startswith(f"{section}\n"):
        current = "\n" + current
    start = current.find(marker)
    if start == -1:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        following = current.find("\n## ", start + len(marker))
        rest = current[following:] if following != -1 else ""
        updated = current[: start + 1] + text + rest
    BENCHMARKS.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS.write_text(updated.lstrip("\n") if updated.startswith("\n") else updated)


# A throwaway site on loopback

# The start of a `-c` script for run_python: Django set up, a superuser "bench" and its API token `token`.
SETUP_USER = """
import django
django.setup()
from django.contrib.auth import get_user_model
from audioml.models import ApiToken
user = get_user_model().objects.create_user("bench", password=None, is_staff=True, is_superuser=True)
_, token = ApiToken.issue(user, "bench")
"""


def site_env(workdir: Path, database_url: str = "") -> dict[str, str]:
    """Production-like settings over a fresh data folder; SQLite in `workdir` unless a database URL is given."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "audioml.settings",
        "AUDIOML_DATA_DIR": str(workdir / "data"),
        "DATABASE_URL": database_url or f"sqlite:///{workdir}/bench.sqlite3",
        "STATIC_ROOT": str(workdir / "static"),
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DEBUG": "False",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


def run_python(env: dict[str, str], *arguments: str) -> str:
    """Run the project's Python (`manage.py …` or `-c CODE`) in ROOT; its stdout, or exit with its output."""
    result = subprocess.run([PYTHON, *arguments], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(arguments)[:80]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip()


def prepare_site(env: dict[str, str]) -> None:
    run_python(env, "manage.py", "migrate", "-v", "0")
    run_python(env, "manage.py", "createcachetable")
    run_python(env, "manage.py", "collectstatic", "--noinput", "-v", "0")


# Audio


def distinct_tone(index: int, sample_rate: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """A tone with a little noise whose audio differs for every index (so no two clips are duplicates)."""
    return tone(180.0 + (index * 7.3) % 2400, seconds, sample_rate, amplitude=0.4, noise=0.02, seed=index)


# Demo corpora


def demo_corpus(folder: Path | None, generate, scratch: Path) -> tuple[list[dict], float, bool]:
    """(rows, seconds to synthesise, reused): the corpus in ``folder`` when its manifest is there (a previous run
    kept it with --corpus), else ``generate(folder)`` into ``folder`` (or a throwaway one in ``scratch``).

    Rows are the manifest's: "path" (absolute), "label", "speaker", "kind", "transcript", "score" (float or None).
    """
    import csv

    target = Path(folder) if folder else scratch / "corpus"
    manifest = target / "manifest.csv"
    if manifest.exists():
        with open(manifest, newline="") as handle:
            rows = [{**row, "path": target / row["file"],
                     "score": float(row["score"]) if row.get("score") else None} for row in csv.DictReader(handle)]
        return rows, 0.0, True
    started = time.perf_counter()
    generate(target)
    seconds = time.perf_counter() - started
    rows, _, _ = demo_corpus(target, generate, scratch)
    return rows, seconds, False


def voice_order(rows: list[dict]) -> list[str]:
    """Speakers in the order the corpus generated them (a seeded order that interleaves accents and variants)."""
    return list(dict.fromkeys(row["speaker"] for row in rows if row.get("speaker")))
