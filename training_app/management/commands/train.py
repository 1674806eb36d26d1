"""manage.py train DATASET --model NAME [--preset P] [--set key=value ...] [--wait | --now]
manage.py train --reproduce JOB [--wait | --now]"""

from __future__ import annotations

import json
import signal
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audioml.errors import Conflict, Unprocessable
from datasets_app.models import Dataset
from audioml.audit import Actor
from training_app.ml.config import FIELDS, PRESETS, ConfigError, parse_override
from training_app.models import TrainingJob

EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_NOT_REPRODUCED = 4
POLL_SECONDS = 1.0
ACTOR = Actor.for_command("manage.py train")


class Command(BaseCommand):
    help = (
        "Start a training job on a dataset and print its id. --wait follows it with a progress bar; --now trains "
        "it in this process (no worker needed). Prints the final metrics as JSON on success; exits 1 when the "
        "job fails and 3 when it is cancelled. --reproduce JOB trains that job's frozen snapshot with its configuration "
        "again and says whether the metrics match (exit 4 when they differ)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", nargs="?", help="dataset name")
        parser.add_argument("--model", dest="model_name", help="model name to register the result as")
        parser.add_argument("--reproduce", type=int, metavar="JOB", default=None,
                            help="train job JOB's frozen snapshot again with its configuration (no dataset or --model)")
        parser.add_argument("--preset", default="balanced", choices=sorted(PRESETS), help="default: balanced")
        parser.add_argument(
            "--set", action="append", default=[], dest="set_values", metavar="KEY=VALUE",
            help=f"change a setting from the preset (repeatable): {', '.join(sorted(FIELDS))}",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--wait", action="store_true", help="follow the job until it finishes")
        mode.add_argument("--now", action="store_true", help="train in this process instead of a worker")

    def handle(self, *args, **options) -> None:
        if options["reproduce"] is not None:
            if options["dataset"] or options["model_name"] or options["set_values"]:
                raise CommandError("--reproduce takes the job's own dataset, model name and settings; give none")
            source = TrainingJob.objects.filter(pk=options["reproduce"]).first()
            if source is None:
                raise CommandError(f"No training job #{options['reproduce']}.")
            self.reproduce(source, now=options["now"], wait=options["wait"])
            return
        if not options["dataset"] or not options["model_name"]:
            raise CommandError("give a dataset and --model NAME (or --reproduce JOB)")
        dataset = Dataset.objects.filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset named '{options['dataset']}'.")
        overrides = self.parse_settings(options["set_values"])
        task = overrides.pop("task", "classification")
        try:
            job = TrainingJob.objects.create_job(
                dataset, options["model_name"], options["preset"], overrides, by=ACTOR, task=task,
                enqueue=not options["now"],
            )
        except (Unprocessable, Conflict) as error:
            raise CommandError(error.detail) from None
        self.stdout.write(str(job.pk))
        self.stderr.write(
            f"Job #{job.pk}: {job.model_name} on {dataset.name}, {job.snapshot_size} clips, task {job.task}, "
            f"preset {job.preset}"
            + (f", {json.dumps(overrides)}" if overrides else "")
        )
        if options["now"]:
            self.run_here(job)
        elif options["wait"]:
            self.follow(job)
        else:
            return
        self.finish(job)

    def reproduce(self, source: TrainingJob, now: bool = False, wait: bool = False, actor: Actor = ACTOR) -> TrainingJob:
        """Queue (or with ``now`` train here) a reproduction of ``source``; with now/wait, print the outcome."""
        try:
            job = source.reproduce(by=actor, enqueue=not now)
        except (Unprocessable, Conflict) as error:
            raise CommandError(error.detail) from None
        self.stdout.write(str(job.pk))
        self.stderr.write(f"Job #{job.pk}: reproduces job #{source.pk} ({job.model_name}), snapshot "
                          f"{job.snapshot_hash[:12]} of {job.snapshot_size} clips, seed {job.config.get('seed')}")
        if now:
            self.run_here(job)
        elif wait:
            self.follow(job)
        else:
            return job
        self.finish(job)
        return job

    def parse_settings(self, pairs: list[str]) -> dict:
        overrides = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--set {pair!r}: use KEY=VALUE, e.g. --set epochs=20")
            try:
                overrides[key.strip()] = parse_override(key.strip(), value.strip())
            except ConfigError as error:
                raise CommandError(f"--set {pair}: {error.message}") from None
        return overrides

    def run_here(self, job: TrainingJob) -> None:
        from training_app import tasks

        interrupted = []

        def on_interrupt(signum, frame):
            if interrupted:
                raise KeyboardInterrupt
            interrupted.append(True)

        def hook(running_job, progress) -> None:
            if interrupted and len(interrupted) == 1:
                interrupted.append(True)
                bar.write("Interrupted: cancelling at the next batch (Ctrl-C again to abort at once).")
                TrainingJob.objects.get(pk=running_job.pk).cancel(by=ACTOR)
            bar.show(progress.phase, progress.percent, progress.eta_seconds, progress.epoch)

        previous = signal.signal(signal.SIGINT, on_interrupt)
        bar = ProgressBar(self.stderr)
        try:
            tasks.run_job_now(job.pk, progress_hook=hook)
        finally:
            signal.signal(signal.SIGINT, previous)
            bar.close()

    def follow(self, job: TrainingJob) -> None:
        bar = ProgressBar(self.stderr)
        seen_epochs = 0
        try:
            while True:
                job.refresh_from_db()
                epoch = job.epochs[-1] if len(job.epochs) > seen_epochs else None
                seen_epochs = len(job.epochs)
                if job.status == TrainingJob.Status.QUEUED:
                    bar.waiting(job.queue_position())
                else:
                    bar.show(job.phase, job.progress, job.eta_seconds, epoch)
                if job.is_finished:
                    return
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            raise CommandError(
                f"Stopped following job #{job.pk}; it goes on in the worker. Cancel it with the API or the panel.",
                returncode=130,
            ) from None
        finally:
            bar.close()

    def finish(self, job: TrainingJob) -> None:
        job.refresh_from_db()
        if job.status == TrainingJob.Status.SUCCEEDED:
            outcome = {
                "job": job.pk, "status": job.status, "model_name": job.model_name, "dataset": job.dataset.name,
                "snapshot_hash": job.snapshot_hash, "version": job.model_version.version, "metrics": job.metrics,
            }
            check = job.reproduction_check()
            if check is not None:
                outcome["reproduction"] = {"of_job": job.reproduces_id, **check.as_dict()}
            self.stdout.write(json.dumps(outcome, indent=2))
            if check is not None:
                self.stderr.write(check.summary())
                if not check.match:
                    raise CommandError(f"Job #{job.pk} did not reproduce job #{job.reproduces_id}: {check.summary()}",
                                       returncode=EXIT_NOT_REPRODUCED)
            return
        if job.status == TrainingJob.Status.CANCELLED:
            raise CommandError(f"Job #{job.pk} was cancelled: {job.error}", returncode=EXIT_CANCELLED)
        raise CommandError(f"Job #{job.pk} {job.status}: {job.error}", returncode=EXIT_FAILED)


class ProgressBar:
    """A tqdm bar on stderr: percent done, the phase, the ETA and the last epoch's metrics."""

    def __init__(self, stream) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=stream._out, unit="%", bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}",
                        dynamic_ncols=True, leave=True)
        self.stream = stream
        self.last_epoch: dict | None = None

    def waiting(self, position: int | None) -> None:
        self.bar.set_description_str(f"queued (position {position})" if position else "queued")
        self.bar.refresh()

    def show(self, phase: str, percent: float, eta: float | None, epoch: dict | None) -> None:
        label = dict(TrainingJob.Phase.choices).get(phase, phase)
        self.bar.set_description_str(label)
        self.bar.n = min(100.0, round(float(percent), 1))
        epoch = epoch or self.last_epoch
        self.last_epoch = epoch
        postfix = {}
        if epoch:
            postfix["epoch"] = epoch.get("epoch")
            if epoch.get("val_loss") is not None:
                postfix["val_loss"] = f"{epoch['val_loss']:.3f}"
            if epoch.get("val_accuracy") is not None:
                postfix["val_acc"] = f"{epoch['val_accuracy']:.3f}"
        if eta is not None:
            postfix["eta"] = f"{eta:.0f}s"
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def write(self, message: str) -> None:
        self.bar.write(message, file=self.stream._out)

    def close(self) -> None:
        self.bar.close()
