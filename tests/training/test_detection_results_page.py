"""The detection results partial: what its headline cards say (rendered from metrics, no training run)."""
from django.template.loader import render_to_string


def _metrics(*, within_budget: bool) -> dict:
    return {
        "evaluated_on": "test",
        "roc_auc": 0.75,
        "baseline": {"roc_auc": 0.813, "description": "logistic regression"},
        "calibration": {"threshold": 0.275, "split": "val", "max_false_accepts_per_hour": 0.5, "met_budget": True,
                        "false_reject_rate": 0.5, "false_accepts_per_hour": 0.0, "hours": 0.2},
        "held_out": {"false_reject_rate": 0.0, "false_accepts_per_hour": 1140.0 if not within_budget else 0.4,
                     "false_accepts": 19, "hours": 1 / 60, "within_budget": within_budget},
    }


def _stats(metrics: dict) -> str:
    return render_to_string("training/_results_detection.html", {"part": "stats", "metrics": metrics})


def test_false_rejects_headline_says_its_threshold_is_over_the_false_accepts_budget():
    html = _stats(_metrics(within_budget=False))

    assert "stat-over-budget" in html and "over budget</span> False accepts per hour on test audio" in html
    assert "False rejects (test clips) at a threshold whose false accepts are over budget" in html
    assert "stat-main" not in html and "False rejects at the calibrated threshold" not in html


def test_false_rejects_headline_within_budget_is_the_main_figure():
    html = _stats(_metrics(within_budget=True))

    assert "stat-main" in html and "False rejects at the calibrated threshold (test clips)" in html
    assert "over budget" not in html


def test_without_held_out_figures_the_calibration_budget_decides():
    metrics = _metrics(within_budget=True)
    del metrics["held_out"]
    metrics["calibration"]["met_budget"] = False

    assert "stat-over-budget" in _stats(metrics)


def test_reported_false_accepts_are_broken_down_by_held_out_recording():
    metrics = {**_metrics(within_budget=False), "test": {"positives": 4, "negatives": 6, "false_reject_rate": 0.0,
                                                         "false_accept_rate": 0.0},
               "stream": {"source": "2 held-out background recordings", "hours": 1.0, "from_backgrounds": True,
                          "hop_seconds": 0.1},
               "det": [[19.0, 0.0, 0.3], [0.0, 1.0, 0.9]], "roc": {"points": [[0.0, 0.0], [1.0, 1.0]]},
               "positive_labels": ["wake"]}
    metrics["held_out"] = {**metrics["held_out"], "det_point": [19.0, 0.0], "per_recording": [
        {"name": "kitchen.wav", "hours": 0.5, "false_accepts": 3},
        {"name": "street.wav", "hours": 0.5, "false_accepts": 16},
    ]}
    html = render_to_string("training/_results_detection.html", {"part": "figures", "metrics": metrics,
                                                                  "result": metrics["test"]})

    assert "kitchen.wav: 3 in" in html and "street.wav: 16 in" in html
    metrics["held_out"]["per_recording"] = metrics["held_out"]["per_recording"][:1]  # one recording: the total says it
    html = render_to_string("training/_results_detection.html", {"part": "figures", "metrics": metrics,
                                                                  "result": metrics["test"]})
    assert "per-recording" not in html
