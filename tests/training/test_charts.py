"""Panel chart geometry (pure functions, no database)."""
from training_app.charts import timeline_chart, xy_chart


def _prediction(scores: list[float]) -> dict:
    return {"duration": 1.5, "threshold": 0.7, "events": [],
            "scores_over_time": {"scores": scores, "hop": 0.1, "window": 1.5}}


def test_a_single_window_score_is_drawn_as_a_dot():
    chart = timeline_chart(_prediction([0.42]))
    assert len(chart["dots"]) == 1
    assert chart["dots"][0]["y"] > chart["threshold_y"]  # 0.42 sits below the 0.7 threshold (larger y)


def test_several_window_scores_are_a_line_without_dots():
    chart = timeline_chart({**_prediction([0.1, 0.5, 0.9]), "duration": 1.7})
    assert chart["dots"] == []
    assert len(chart["path"].split()) == 3


def test_the_validation_legend_keeps_an_acronym_in_capitals():
    from training_app.charts import training_charts

    epochs = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_auc": 0.5},
              {"epoch": 2, "train_loss": 0.5, "val_loss": 0.55, "val_auc": 0.7}]
    chart = training_charts(epochs, best_epoch=2, task="detection")["accuracy"]
    assert chart.title == "Validation ROC AUC"
    assert [line["name"] for line in chart.lines] == ["validation ROC AUC"]  # was "validation roc auc"


def test_validation_roc_auc_reads_as_a_number_from_0_to_1_not_a_percentage():
    from training_app.charts import training_charts

    epochs = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_auc": 0.5},
              {"epoch": 2, "train_loss": 0.5, "val_loss": 0.55, "val_auc": 0.438}]
    chart = training_charts(epochs, best_epoch=2, task="detection")["accuracy"]
    assert chart.lines[0]["last"]["value"] == "0.438"
    assert [tick["label"] for tick in chart.y_ticks] == ["0.00", "0.25", "0.50", "0.75", "1.00"]


def test_validation_accuracy_stays_a_percentage():
    from training_app.charts import training_charts

    epochs = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_accuracy": 0.5}]
    chart = training_charts(epochs, task="classification")["accuracy"]
    assert chart.lines[0]["last"]["value"] == "50.0%" and chart.y_ticks[-1]["label"] == "100%"


def test_detection_events_sit_in_a_lane_above_the_scores_and_each_window_is_dotted():
    """An event spanning most of a short clip was a band over the whole plot that hid the score line."""
    prediction = {**_prediction([0.3, 0.35, 0.4]), "duration": 2.0,
                  "events": [{"start": 0.0, "end": 1.9, "score": 0.4}]}
    chart = timeline_chart(prediction)
    (event,) = chart["events"]
    assert chart["lane_top"] + chart["lane_height"] < chart["top"]  # the lane is outside the plot
    assert event["title"] == "detected 0.00-1.90 s, score 0.400"
    assert [sample["title"] for sample in chart["samples"]] == ["0.75 s: score 0.300", "0.85 s: score 0.350",
                                                                 "0.95 s: score 0.400"]


def test_try_it_detection_draws_the_events_lane_and_the_line_above_the_threshold():
    from django.template.loader import render_to_string

    prediction = {**_prediction([0.3, 0.8, 0.4]), "duration": 2.0, "detected": True, "score": 0.8,
                  "threshold_source": "calibrated", "events": [{"start": 0.5, "end": 1.2, "score": 0.8}]}
    html = render_to_string("registry/_try_detection.html", {"prediction": prediction})
    assert 'class="event-mark"' in html and "event-band" not in html
    assert 'clip-path="url(#timeline-above-threshold)"' in html and "threshold 0.700" in html


def test_training_curves_are_drawn_wide_and_narrow_for_a_phone():
    """A phone's card shows the narrow drawing (static/app.css): 340 units wide, so its 11-unit text stays
    near 10 px where the wide one's shrank to 6 px, with no more epoch labels than the wide one."""
    from django.template.loader import render_to_string

    from training_app.charts import NARROW_WIDTH, training_charts

    epochs = [{"train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5 + e / 100} for e in range(1, 13)]
    loss = training_charts(epochs, best_epoch=10)["loss"]
    narrow = loss.narrow
    assert (loss.width, narrow.width) == (560, NARROW_WIDTH) and narrow.narrow is None
    assert [line["name"] for line in narrow.lines] == [line["name"] for line in loss.lines]
    assert narrow.marker["label"] == "best epoch 10" and narrow.right - narrow.marker["x"] < narrow.plot_width / 3
    assert [t["label"] for t in loss.x_ticks] == ["1", "3", "6", "9", "12"]
    assert [t["label"] for t in narrow.x_ticks] == ["1", "5", "10"]
    html = render_to_string("training/_chart.html", {"chart": loss})
    assert html.count("<svg") == 2 and html.count("<figcaption>") == 1
    assert 'viewBox="0 0 560 220" role="img" aria-label="Loss per epoch" class="chart-wide"' in html
    assert f'viewBox="0 0 {NARROW_WIDTH} 200" role="img" aria-label="Loss per epoch" class="chart-narrow"' in html


def test_try_it_detection_timeline_is_drawn_wide_and_narrow_each_with_its_own_clip():
    from django.template.loader import render_to_string

    prediction = {**_prediction([0.3, 0.8, 0.4]), "duration": 2.0, "detected": True, "score": 0.8,
                  "threshold_source": "calibrated", "events": [{"start": 0.5, "end": 1.2, "score": 0.8}]}
    chart = timeline_chart(prediction)
    assert chart["narrow"]["width"] < chart["width"] and len(chart["narrow"]["ticks"]) < len(chart["ticks"])
    html = render_to_string("registry/_try_detection.html", {"prediction": prediction})
    assert 'class="chart-wide"' in html and 'class="chart-narrow"' in html
    assert html.count('id="timeline-above-threshold"') == 1 and html.count('id="timeline-above-threshold-narrow"') == 1
    assert 'clip-path="url(#timeline-above-threshold-narrow)"' in html


def test_the_det_charts_y_axis_name_sits_above_the_plot_clear_of_the_operating_point():
    # A DET curve starts top-left (no false accepts, every clip rejected), where the operating point often sits.
    chart = xy_chart([[0.0, 1.0], [0.5, 0.2], [20.0, 0.0]], title="DET", x_label="false accepts per hour",
                     y_label="false rejects", log_x=True, marker=[0.0, 1.0])
    marker_top = chart["marker"]["y"] - 5  # the dot's radius
    assert chart["marker"]["y"] == chart["top"]
    assert chart["y_label_y"] < marker_top - 2  # the label's baseline, with its text above it
    assert chart["y_label_y"] > 9  # and the text (about 10 px tall) inside the drawing
