"""manage.py make_demo_dataset [--name N] [--voices N] [--seed S]: a speech-commands-style demo dataset."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datasets_app.models import Dataset

DEFAULT_NAME = "speech-commands-demo"


class Command(BaseCommand):
    help = (
        "Synthesise a speech-commands-style corpus (ten command words plus background noise, spoken by "
        "espeak-ng voices with the speaker recorded on every clip) and import it into a dataset. Needs espeak-ng "
        "(apt-get install -y espeak-ng sox)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default=DEFAULT_NAME, help=f"dataset name (default {DEFAULT_NAME})")
        parser.add_argument("--voices", type=int, default=20, help="number of synthetic speakers (default 20)")
        parser.add_argument("--takes", type=int, default=1, help="recordings of each word per voice (default 1)")
        parser.add_argument("--words", default="", help="comma-separated words instead of the ten commands")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    def handle(self, *args, **options) -> None:
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
