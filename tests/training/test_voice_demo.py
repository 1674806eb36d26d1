"""manage.py make_demo_dataset --kind voice: one speaker's sentences with transcripts."""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import call_command

from datasets_app.models import Dataset

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_voice_demo_dataset_has_one_speaker_and_a_transcript_per_clip(db):
    out = StringIO()
    call_command("make_demo_dataset", "--kind", "voice", "--sentences", "4", "--seed", "2", stdout=out, stderr=StringIO())
    dataset = Dataset.objects.get(name="voice-demo")
    clips = list(dataset.clips.active())
    assert len(clips) == 4
    assert {clip.speaker for clip in clips} == {"en-us"}
    assert all(clip.transcript.endswith((".", "?")) and clip.duration > 0.5 for clip in clips)
    assert "--set task=synthesis" in out.getvalue()
