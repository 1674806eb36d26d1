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
