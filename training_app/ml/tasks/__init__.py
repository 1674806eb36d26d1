"""What each kind of model learns: one module per task, all with the same small set of names.

``TASKS`` is the only list of tasks. The job, the snapshot, the registry and the prediction API store a task's
name, config and metrics as data and ask its module when they need more. Every task module exposes:

- ``TRAINS_ON``: the clip field it learns from ("label", "score", later "transcript"); clips without it are left
  out of the snapshot and counted.
- ``usable(clip)``: whether a clip takes part (regression skips clips without a score).
- ``DEFAULTS``: settings that differ from the preset for this task; ``check_config(cfg)`` raises ConfigError
  naming the field; ``check_data(clips, cfg)`` lists every data problem in plain words (empty: trainable).
- ``labels(clips, cfg)``: the names stored with the version; ``OUTPUT_NAME`` and ``output_layer()``: what the
  exported model (waveform in) returns; ``targets``, ``n_outputs``, ``loss_function``, ``epoch_metrics``: the
  network head and its training signal; ``EPOCH_METRIC``: (epoch key, title, is a share) of the validation
  figure charted per epoch; ``evaluate(fitted)``: held-out metrics beside a shallow baseline;
  ``export_config(metrics, cfg)``: what predictions need besides the model (a threshold, say).
- ``headline(metrics)``: the main figure beside its baseline, for lists and the API.
- ``USES_THRESHOLD`` (optional): predictions accept a ``threshold`` override; ``USES_BACKGROUND`` (optional): the
  snapshot carries the dataset's background recordings (``kind: "background"``); ``TRAINS_ON_BACKGROUND``
  (optional): the default loop adds windows of the training background recordings to every epoch as negatives
  (target 0), random and hard-mined ones, as ``background_negatives`` and ``hard_negatives`` say, and chooses the
  checkpoint by the validation false rejects within the false-accept budget (``ml/background.py``);
  ``crop_range(clip, power, cfg, n_frames)`` (optional): where a training clip's random window may start (detection:
  positives only where the window holds the whole phrase).
- ``window_hop_seconds(clip_seconds)`` and ``shape_prediction(outputs, starts, context)``: how a prediction of one
  file is windowed and answered; ``prediction_answer(result)``: (answer, score) of one answer, what the
  registry's prediction log counts per version and compares between a shadow and its primary (the label,
  detected or not, a score's tenth, the transcript); ``answers_agree(first, second)`` (optional; default: the
  answers are equal) says whether two such pairs agree.

Optional hooks, for tasks that do not fit the defaults above (fixed-length clips, one target per clip):

- ``fit(run)``: the task's own data pipeline and training loop. ``train()`` checks the data, seeds, sets
  threads and the device, then calls ``fit(run)`` with a ``train.TaskRun`` (settings, trainable clips,
  ``split()``, ``load_powers()``, ``report``/``log``/``check_stop``, ``timed``, ``summary``, ``result``) instead
  of the default loop; it must write the artifacts with ``export.write_artifacts`` (which takes the task's
  ``dynamic_shapes``) and return ``run.result(metrics, artifacts, best_epoch, export_seconds)``. The metrics it
  returns must hold what the pages and the registry read from every task: "task", "history" (one dict per epoch
  with "epoch", "train_loss", "val_loss" and the ``EPOCH_METRIC`` key), "best_epoch", "split", "prediction"
  (what predictions need; ``export_config`` is not called) and "timings" (``run.summary`` gives most of them).
  With ``fit``, the default loop's hooks (``targets``, ``n_outputs``, ``loss_function``, ``epoch_metrics``,
  ``output_layer``, ``evaluate``, ``export_config``) are not needed; ``EPOCH_SERIES`` (optional) lists
  (epoch key, name) pairs charted together in place of the single ``EPOCH_METRIC``.
- ``predict_waveform(module, waveform, context)``: the whole answer for one file (a mono float32 numpy
  waveform at the model's rate) from the loaded exported module, when windows of the model's clip length and
  ``shape_prediction`` do not fit (transcription decodes variable-length segments to text). ``context`` is what
  ``shape_prediction`` receives. It must return the task's prediction fields plus "windows" (parts scored).
- ``artifact_files(artifacts_dir)``: the files a version of this task stores, as paths relative to the folder,
  when they are not ``artifacts.ARTIFACT_FILES`` (a voice has no ONNX file and keeps its held-out samples).
- ``PREDICTS = False``: the task's models do not answer audio predictions (a voice speaks text instead).

Modules import only numpy and the torch-free parts of this package at import time (torch inside the training
functions), so the web process can validate jobs and render pages without loading torch.
"""

from __future__ import annotations

from types import ModuleType

from . import classification, detection, regression, synthesis, transcription

TASKS: dict[str, ModuleType] = {
    "classification": classification,
    "regression": regression,
    "detection": detection,
    "transcription": transcription,
    "synthesis": synthesis,
}


def task_module(name: str) -> ModuleType:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
