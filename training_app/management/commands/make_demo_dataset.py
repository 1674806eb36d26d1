"""manage.py make_demo_dataset [--kind words|commands] [--name N] [--voices N] [--seed S]: a demo dataset.

``words`` (default): a speech-commands-style corpus of single words for classification; ``commands``: spoken
command phrases with transcripts for transcription.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datasets_app.models import Dataset

DEFAULT_NAME = "speech-commands-demo"
DEFAULT_NAMES = {"words": DEFAULT_NAME, "commands": "spoken-commands-demo"}


class Command(BaseCommand):
    help = (
        "Synthesise a speech-commands-style corpus (ten command words plus background noise, spoken by "
        "espeak-ng voices with the speaker recorded on every clip) and import it into a dataset. Needs espeak-ng "
        "(apt-get install -y espeak-ng sox)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", choices=tuple(DEFAULT_NAMES), default="words",
                            help="words: single command words for classification (default); commands: command "
                            "phrases with transcripts for transcription")
        parser.add_argument("--name", default="", help=f"dataset name (default {DEFAULT_NAME}, or "
                            f"{DEFAULT_NAMES['commands']} for --kind commands)")
        parser.add_argument("--phrases", type=int, default=30,
                            help="--kind commands: phrases each voice speaks (default 30)")
        parser.add_argument("--voices", type=int, default=20, help="number of synthetic speakers (default 20)")
        parser.add_argument("--takes", type=int, default=1, help="recordings of each word per voice (default 1)")
        parser.add_argument("--words", default="", help="comma-separated words instead of the ten commands")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    def handle(self, *args, **options) -> None:
        options["name"] = options["name"] or DEFAULT_NAMES[options["kind"]]
        if options["kind"] == "commands":
            self.make_commands(options)
            return
        from tqdm import tqdm

        from datasets_app.importing import import_path
        from training_app.demo_corpus import DEFAULT_WORDS, DemoCorpusError, generate_demo_corpus

        words = [w.strip() for w in options["words"].split(",") if w.strip()] or list(DEFAULT_WORDS)
        dataset, created = Dataset.objects.get_or_create(
            name=options["name"],
            defaults={
                "description": f"Synthetic speech commands ({', '.join(words)} and noise) spoken by "
                f"{options['voices']} espeak-ng voices; made by manage.py make_demo_dataset "
                f"--voices {options['voices']} --seed {options['seed']}.",
                "sample_rate": 16000,
            },
        )
        if not created and dataset.sample_rate != 16000:
            raise CommandError(f"Dataset '{dataset.name}' exists with a {dataset.sample_rate} Hz sample rate; "
                               "the demo corpus is 16 kHz. Choose another --name.")
        self.stderr.write(f"{'Creating' if created else 'Adding to'} dataset '{dataset.name}'.")
        with tempfile.TemporaryDirectory(prefix="audioml-demo-") as folder:
            with tqdm(total=0, desc="Synthesising", unit="clip", file=self.stderr._out) as bar:
                def synthesised(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                try:
                    generate_demo_corpus(
                        Path(folder), words=words, n_voices=options["voices"], seed=options["seed"],
                        takes_per_voice=options["takes"], progress=synthesised,
                    )
                except DemoCorpusError as error:
                    if created:
                        dataset.delete()
                    raise CommandError(str(error)) from None
            with tqdm(total=0, desc="Importing", unit="clip", file=self.stderr._out) as bar:
                def imported(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                report = import_path(dataset, Path(folder), progress=imported)
        duplicates = [r for r in report.rejected if r.duplicate_of]
        failed = [r for r in report.rejected if not r.duplicate_of]
        for result in failed[:10]:
            self.stderr.write(f"  rejected {result.name}: {result.reason}")
        summary = dataset.clips.active().values_list("label", flat=True)
        counts: dict[str, int] = {}
        for label in summary:
            counts[label] = counts.get(label, 0) + 1
        speakers = dataset.clips.active().exclude(speaker="").values("speaker").distinct().count()
        self.stdout.write(self.style.SUCCESS(
            f"Dataset '{dataset.name}': {len(report.accepted)} clips imported"
            + (f", {len(duplicates)} already there" if duplicates else "")
            + (f", {len(failed)} rejected" if failed else "")
            + f"; now {sum(counts.values())} clips, {len(counts)} labels, {speakers} speakers."
        ))
        self.stdout.write("Labels: " + ", ".join(f"{label} ({n})" for label, n in sorted(counts.items())))
        self.stdout.write(f"Train it: python manage.py train {dataset.name} --model commands --wait")
        if failed:
            raise CommandError(f"{len(failed)} clips could not be imported.")

    def make_commands(self, options) -> None:
        from tqdm import tqdm

        from datasets_app.ingest import import_path
        from training_app.demo_commands import generate_command_corpus
        from training_app.demo_corpus import DemoCorpusError

        dataset, created = Dataset.objects.get_or_create(
            name=options["name"],
            defaults={
                "description": f"Spoken command phrases with transcripts ({options['phrases']} per voice) from "
                f"{options['voices']} espeak-ng voices; made by manage.py make_demo_dataset --kind commands "
                f"--voices {options['voices']} --phrases {options['phrases']} --seed {options['seed']}.",
                "sample_rate": 16000,
            },
        )
        if not created and dataset.sample_rate != 16000:
            raise CommandError(f"Dataset '{dataset.name}' exists with a {dataset.sample_rate} Hz sample rate; "
                               "the demo corpus is 16 kHz. Choose another --name.")
        self.stderr.write(f"{'Creating' if created else 'Adding to'} dataset '{dataset.name}'.")
        with tempfile.TemporaryDirectory(prefix="audioml-demo-") as folder:
            with tqdm(total=0, desc="Synthesising", unit="clip", file=self.stderr._out) as bar:
                def synthesised(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                try:
                    generate_command_corpus(Path(folder), n_voices=options["voices"],
                                            phrases_per_voice=options["phrases"], seed=options["seed"],
                                            progress=synthesised)
                except DemoCorpusError as error:
                    if created:
                        dataset.delete()
                    raise CommandError(str(error)) from None
            report = import_path(dataset, Path(folder))
        failed = [r for r in report.rejected if not r.duplicate_of]
        for result in failed[:10]:
            self.stderr.write(f"  rejected {result.name}: {result.reason}")
        clips = dataset.clips.active().exclude(transcript="")
        speakers = clips.exclude(speaker="").values("speaker").distinct().count()
        self.stdout.write(self.style.SUCCESS(
            f"Dataset '{dataset.name}': {len(report.accepted)} clips imported; now {clips.count()} clips with a "
            f"transcript from {speakers} speakers."
        ))
        self.stdout.write(f"Train it: python manage.py train {dataset.name} --model commands-asr "
                          "--set task=transcription --wait")
        if failed:
            raise CommandError(f"{len(failed)} clips could not be imported.")
