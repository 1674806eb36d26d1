"""`manage.py predict NAME[@ALIAS|:VERSION] FILE...` prints one JSON line per file."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from registry_app.models import Alias
from tests.audio import tone, write_wav


def run_predict(*args) -> list[dict]:
    out = StringIO()
    call_command("predict", *[str(arg) for arg in args], stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
def clips(tmp_path):
    return write_wav(tmp_path / "beep.wav", tone(2400.0, 0.5)), write_wav(tmp_path / "long-hum.wav", tone(300.0, 1.5))


def test_prints_one_json_line_per_file_with_the_api_fields(register, clips):
    register()
    beep, hum = run_predict("keywords", *clips)
    assert beep["file"] == "beep.wav" and beep["label"] == "high"
    assert hum["file"] == "long-hum.wav" and hum["label"] == "low"
    assert hum["windows"] == 5 and hum["aggregation"] == "mean"
    for line in (beep, hum):
        assert (line["model"], line["version"], line["ref"]) == ("keywords", 1, "latest")
        assert set(line) >= {"file", "label", "scores", "model", "version", "ref", "windows", "duration", "time_ms"}


def test_alias_and_version_syntax_choose_the_version(register, clips):
    v1 = register()
    register()
    Alias.point(v1.model, "production", v1)
    Alias.point(v1.model, "staging", v1)
    assert run_predict("keywords", clips[0])[0]["ref"] == "production"
    assert (run_predict("keywords@staging", clips[0])[0]["version"], run_predict("keywords@staging", clips[0])[0]["ref"]) == (1, "staging")
    assert run_predict("keywords:2", clips[0])[0]["version"] == 2
    assert run_predict("keywords:v2", clips[0])[0]["ref"] == "v2"


def test_bad_file_prints_its_error_line_and_fails_the_command(register, clips, tmp_path):
    register()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio" * 30)
    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command("predict", "keywords", str(clips[0]), str(bad), str(tmp_path / "missing.wav"), stdout=out)
    assert "2 of 3 files" in str(error.value)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["label"] == "high"
    assert lines[1]["error"]["code"] == "undecodable-audio"
    assert lines[2]["error"]["reason"] == "missing"


@pytest.mark.parametrize("target, message", [("ghost", "No registered model"), ("keywords@canary", "no alias"), ("keywords:9", "no version 9")])
def test_unknown_targets_fail_with_a_clear_message(register, clips, target, message):
    register()
    with pytest.raises(CommandError, match=message):
        call_command("predict", target, str(clips[0]), stdout=StringIO())
