"""manage.py make_demo_dataset [--kind keywords|hard|scores|wakeword|commands|voice] [--name N] [--voices N] [--seed S]:
a demo dataset (hard: the hard keyword benchmark; voice: one speaker's sentences with transcripts, for synthesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datasets_app.models import Dataset

KINDS = ("keywords", "hard", "scores", "wakeword", "commands", "voice")
DEFAULT_NAMES = {"keywords": "speech-commands-demo", "hard": "hard-keywords-demo", "scores": "speech-quality-demo",
                 "wakeword": "wake-word-demo", "commands": "spoken-commands-demo", "voice": "voice-demo"}
DEFAULT_VOICES = {"hard": 48}


class Command(BaseCommand):
    help = (
        "Synthesise a demo corpus spoken by espeak-ng voices (the speaker recorded on every clip) and import it "
        "into a dataset. --kind keywords (the default): ten command words plus background noise (classification); hard: "
        "five keyword pairs a sound apart, an 'unknown' class whose held-out voices say words no other voice says, "
        "noise, speech down to 8 dB SNR (the hard classification benchmark); scores: the "
        "words buried in noise at a known SNR, scored 0-1 by how clean they sound (regression); wakeword: 'hey "
        "marlo', confusable phrases, other words, noise and long background recordings (detection); commands: spoken "
        "command phrases with transcripts, labelled by intent (transcription). Needs "
        "espeak-ng (apt-get install -y espeak-ng sox)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", choices=KINDS, default="keywords", help="which corpus (default keywords)")
        parser.add_argument("--name", default="", help="dataset name (default: " + ", ".join(
            f"{name} for {kind}" for kind, name in DEFAULT_NAMES.items()) + ")")
        parser.add_argument("--voices", type=int, default=None,
                            help="number of synthetic speakers (default 20; hard: 48)")
        parser.add_argument("--holdout", type=int, default=12,
                            help="hard: voices whose unknown words no other voice says, to hold out for the test "
                                 "(default 12)")
        parser.add_argument("--takes", type=int, default=None, help="recordings of each word per voice (default 1; "
                            "hard: unknown words per voice, default 3; wakeword: of the wake phrase, default 4)")
        parser.add_argument("--words", default="", help="comma-separated words instead of the ten commands")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--phrases", type=int, default=30,
                            help="commands: command phrases each voice speaks (default 30)")
        parser.add_argument("--backgrounds", type=int, default=2,
                            help="wakeword: number of long background recordings (default 2)")
        parser.add_argument("--background-minutes", type=float, default=5.0,
                            help="wakeword: length of each background recording in minutes (default 5)")
        parser.add_argument("--sentences", type=int, default=300, help="voice: number of sentences (default 300)")
        parser.add_argument("--voice", default="en-us", help="voice: the espeak-ng voice that speaks (default en-us)")

    def handle(self, *args, **options) -> None:
        from tqdm import tqdm

        from datasets_app.importing import import_path
        from training_app.demo_corpus import DemoCorpusError

        kind = options["kind"]
        if options["voices"] is None:
            options["voices"] = DEFAULT_VOICES.get(kind, 20)
        name = options["name"] or DEFAULT_NAMES[kind]
        dataset, created = Dataset.objects.get_or_create(
            name=name, defaults={"description": self._description(kind, options), "sample_rate": 16000},
        )
        if not created and dataset.sample_rate != 16000:
            raise CommandError(f"Dataset '{dataset.name}' exists with a {dataset.sample_rate} Hz sample rate; "
                               "the demo corpus is 16 kHz. Choose another --name.")
        self.stderr.write(f"{'Creating' if created else 'Adding to'} dataset '{dataset.name}'.")
        with tempfile.TemporaryDirectory(prefix="audioml-demo-") as folder:
            with tqdm(total=0, desc="Synthesising", unit="file", file=self.stderr._out) as bar:
                def synthesised(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                try:
                    self._generate(kind, Path(folder), options, synthesised)
                except DemoCorpusError as error:
                    if created:
                        dataset.delete()
                    raise CommandError(str(error)) from None
            with tqdm(total=0, desc="Importing", unit="file", file=self.stderr._out) as bar:
                def imported(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                report = import_path(dataset, Path(folder), progress=imported)
        duplicates = [r for r in report.rejected if r.duplicate_of]
        failed = [r for r in report.rejected if not r.duplicate_of]
        for result in failed[:10]:
            self.stderr.write(f"  rejected {result.name}: {result.reason}")
        clips = dataset.clips.active().ordinary()
        counts: dict[str, int] = {}
        for label in clips.values_list("label", flat=True):
            counts[label] = counts.get(label, 0) + 1
        speakers = clips.exclude(speaker="").values("speaker").distinct().count()
        backgrounds = list(dataset.clips.active().backgrounds().values_list("duration", flat=True))
        self.stdout.write(self.style.SUCCESS(
            f"Dataset '{dataset.name}': {len(report.accepted)} clips imported"
            + (f", {len(duplicates)} already there" if duplicates else "")
            + (f", {len(failed)} rejected" if failed else "")
            + f"; now {sum(counts.values())} clips, {len(counts)} labels, {speakers} speakers"
            + (f", {len(backgrounds)} background recording{'s' * (len(backgrounds) != 1)} "
               f"({sum(backgrounds) / 60:.1f} min)" if backgrounds else "")
            + "."
        ))
        self.stdout.write("Labels: " + ", ".join(f"{label} ({n})" for label, n in sorted(counts.items())))
        hint = self._train_hint(kind, dataset.name, options)
        problems = self._training_problems(dataset, hint)
        if problems:
            # The smallest corpora (--voices 2) are for a quick look, not for training: say so before the hint.
            self.stdout.write(self.style.WARNING(
                "Too small to train yet: " + "; ".join(problems)
                + ". Make it again with more --voices (or --takes), or add clips."
            ))
        self.stdout.write(("Then train it: " if problems else "Train it: ") + hint)
        if failed:
            raise CommandError(f"{len(failed)} clips could not be imported.")

    def _generate(self, kind: str, folder: Path, options: dict, progress) -> None:
        from training_app.demo_corpus import (
            DEFAULT_WORDS, generate_demo_corpus, generate_hard_corpus, generate_scores_corpus,
            generate_wakeword_corpus,
        )

        words = [w.strip() for w in options["words"].split(",") if w.strip()] or list(DEFAULT_WORDS)
        common = {"n_voices": options["voices"], "seed": options["seed"], "progress": progress}
        takes = options["takes"]
        if kind == "voice":
            from training_app.voice_corpus import generate_voice_corpus

            generate_voice_corpus(folder, n_sentences=options["sentences"], voice=options["voice"],
                                  seed=options["seed"], progress=progress)
        elif kind == "keywords":
            generate_demo_corpus(folder, words=words, takes_per_voice=takes or 1, **common)
        elif kind == "hard":
            generate_hard_corpus(folder, n_holdout=options["holdout"], unknown_takes=3 if takes is None else takes,
                                 **common)
        elif kind == "commands":
            from training_app.demo_commands import generate_command_corpus

            generate_command_corpus(folder, phrases_per_voice=options["phrases"], **common)
        elif kind == "scores":
            generate_scores_corpus(folder, words=words, takes_per_voice=takes or 1, **common)
        else:
            generate_wakeword_corpus(folder, positive_takes=4 if takes is None else takes,
                                     n_backgrounds=options["backgrounds"],
                                     background_minutes=options["background_minutes"], **common)

    @staticmethod
    def _description(kind: str, options: dict) -> str:
        made_by = (f"made by manage.py make_demo_dataset --kind {kind} --voices {options['voices']} "
                   f"--seed {options['seed']}.")
        if kind == "scores":
            return ("Synthetic spoken words buried in noise at a known SNR (-5 to 25 dB); the score (0-1) is that SNR "
                    f"scaled, so it follows how clean the clip sounds; {options['voices']} espeak-ng voices; {made_by}")
        if kind == "commands":
            return (f"Spoken command phrases with transcripts ({options['phrases']} per voice, labelled by intent) "
                    f"from {options['voices']} espeak-ng voices; {made_by}")
        if kind == "hard":
            from training_app.demo_corpus import HARD_PAIRS, hard_holdout_voices

            pairs = ", ".join(f"{a}/{b}" for a, b in HARD_PAIRS)
            held = hard_holdout_voices(options["voices"], options["holdout"], options["seed"])
            return (f"Hard synthetic keywords: pairs a sound apart ({pairs}), 'unknown' (other words), noise; speech "
                    f"at 8-25 dB SNR; {options['voices']} espeak-ng voices. The test voices, whose unknown words no "
                    f"other voice says: {', '.join(held)} (hold them out with holdout_speakers); {made_by}")
        if kind == "voice":
            return (f"{options['sentences']} sentences spoken by the espeak-ng voice {options['voice']} (one speaker, "
                    "with transcripts), for task=synthesis; made by manage.py make_demo_dataset --kind voice.")
        if kind == "wakeword":
            return ("Synthetic wake-word corpus: 'hey marlo' (hey_marlo), confusable phrases (confusable), other words "
                    f"(other), noise, and {options['backgrounds']} background recordings of ordinary speech and pauses "
                    f"over room noise; {options['voices']} espeak-ng voices; {made_by}")
        from training_app.demo_corpus import DEFAULT_WORDS

        words = options["words"] or ", ".join(DEFAULT_WORDS)
        return (f"Synthetic speech commands ({words} and noise) spoken by {options['voices']} espeak-ng voices; "
                f"{made_by}")

    @staticmethod
    def _training_problems(dataset: Dataset, hint: str) -> list[str]:
        """What the panel's new-job form would say against the hint's job (the same check as `train`)."""
        from training_app.ml.config import parse_override
        from training_app.models import plan_job

        words = hint.split()
        pairs = [words[i + 1].partition("=") for i, word in enumerate(words[:-1]) if word == "--set"]
        overrides = {key: parse_override(key, value) for key, _, value in pairs}
        task = overrides.pop("task", "classification")
        return plan_job(dataset, "balanced", overrides, task)[3]

    @staticmethod
    def _train_hint(kind: str, name: str, options: dict) -> str:
        if kind == "scores":
            return f"python manage.py train {name} --model speech-quality --set task=regression --wait"
        if kind == "commands":
            return f"python manage.py train {name} --model commands-asr --set task=transcription --wait"
        if kind == "voice":
            return f"python manage.py train {name} --model voice --set task=synthesis --wait"
        if kind == "wakeword":
            return (f"python manage.py train {name} --model hey-marlo --set task=detection "
                    "--set positive_label=hey_marlo --set clip_seconds=1.5 --wait")
        if kind == "hard":
            from training_app.demo_corpus import hard_holdout_voices

            held = ",".join(hard_holdout_voices(options["voices"], options["holdout"], options["seed"]))
            return f"python manage.py train {name} --model hard-keywords --set holdout_speakers={held} --wait"
        return f"python manage.py train {name} --model commands --wait"
