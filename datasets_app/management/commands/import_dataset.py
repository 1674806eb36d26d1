"""manage.py import_dataset NAME PATH: import a folder or zip on this machine into a dataset, with a progress bar."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audioml.audit import Actor
from audioml.errors import DuplicateName
from datasets_app.importing import ImportRejected
from datasets_app.models import SAMPLE_RATE_CHOICES, Dataset, clean_clip_metadata


class Command(BaseCommand):
    help = (
        "Import a folder or zip archive into a dataset: a folder per label (yes/001.wav), or audio files plus a "
        "manifest.csv (header among file,label,transcript,score,speaker,notes,source,kind) or an LJSpeech metadata.csv."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Dataset name")
        parser.add_argument("path", type=Path, help="Folder or .zip file")
        parser.add_argument("--create", action="store_true", help="Create the dataset if it does not exist")
        parser.add_argument(
            "--sample-rate", type=int, default=16000, choices=[rate for rate, _ in SAMPLE_RATE_CHOICES],
            help="Sample rate of a dataset made with --create (default 16000)",
        )
        parser.add_argument("--description", default="", help="Description of a dataset made with --create")
        parser.add_argument("--label", default="", help="Label for files that get none from the folder layout or manifest")
        parser.add_argument(
            "--source", default="",
            help="Where the files come from, when not the dataset's source (a URL, a device, a corpus); stored on every "
            "clip whose manifest row names no source of its own",
        )
        parser.add_argument(
            "--background", action="store_true",
            help="Import every audio file as a long background recording (minutes to hours of ordinary audio, up "
            "to BACKGROUND_MAX_SECONDS; a manifest's kind column can also say so per file)",
        )
        parser.add_argument("--user", default="", help="User name recorded as the uploader")
        parser.add_argument("--show-rejected", type=int, default=20, metavar="N", help="List at most N rejected files (default 20)")

    def handle(self, *args, name: str, path: Path, create: bool, sample_rate: int, description: str, label: str,
               user: str, show_rejected: int, background: bool = False, source: str = "", **options):
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        if label:
            try:
                label = clean_clip_metadata(label=label)["label"]
            except ValidationError as exc:
                raise CommandError(f"--label: {' '.join(exc.message_dict['label'])}") from None
        try:
            source = clean_clip_metadata(source=source)["source"]
        except ValidationError as exc:
            raise CommandError(f"--source: {' '.join(exc.message_dict['source'])}") from None
        actor = Actor.for_command("import_dataset", user=self._user(user))
        dataset = Dataset.objects.filter(name=name).first()
        if dataset is None:
            if not create:
                raise CommandError(f"No dataset named '{name}'. Add --create to make it.")
            try:
                dataset = Dataset.objects.create_dataset(name, description, sample_rate, by=actor)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())) from None
            except DuplicateName as exc:
                raise CommandError(exc.detail) from None
            self.stdout.write(f"Created dataset '{dataset.name}' ({dataset.sample_rate} Hz).")

        bar = tqdm(total=0, unit="file", desc=f"Importing into {dataset.name}", disable=options["verbosity"] == 0, file=self.stderr._out)

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        try:
            report = dataset.import_path(path, by=actor, progress=progress, default_label=label, archive=str(path),
                                         background=background, default_source=source)
        except ImportRejected as exc:
            raise CommandError(f"Refused: {exc.reason}.") from None
        finally:
            bar.close()

        rejected = report.rejected
        layouts = {"folders": "a folder per label", "manifest": "a manifest CSV", "ljspeech": "LJSpeech metadata.csv"}
        self.stdout.write(f"Read as {layouts.get(report.layout, report.layout)}.")
        for result in rejected[:show_rejected]:
            self.stdout.write(self.style.WARNING(f"  rejected {result.name}: {result.reason}"))
        if len(rejected) > show_rejected:
            self.stdout.write(f"  … and {len(rejected) - show_rejected} more rejected.")
        if report.skipped:
            self.stdout.write(f"Skipped {len(report.skipped)} non-audio file(s): {', '.join(report.skipped[:10])}")
        summary = f"{len(report.accepted)} clip(s) added, {len(rejected)} rejected."
        self.stdout.write(self.style.SUCCESS(summary) if report.accepted else self.style.WARNING(summary))

    def _user(self, username: str):
        if not username:
            return None
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named '{username}'.")
        return user
