"""Prometheus metrics: request counts and latencies, job counts and durations, queue length, prediction latency.

Counters and histograms are shared between processes through prometheus-client's multiprocess mode (the folder
is set in settings before this module is imported). Database-derived figures are computed at scrape time."""

from __future__ import annotations

import time

from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

REQUESTS = Counter("audioml_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "audioml_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PREDICTION_SECONDS = Histogram(
    "audioml_prediction_seconds", "Time to score one audio file, decoding included", ["model"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOB_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600)


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(request.method, route).observe(time.perf_counter() - started)
        return response


class DatabaseCollector:
    """Job counts by status, finished job durations and task queue length, read from the database."""

    def collect(self):
        from django_q.models import OrmQ

        from training_app.models import TrainingJob

        jobs = GaugeMetricFamily("audioml_training_jobs", "Training jobs by status", labels=["status"])
        counts = dict(TrainingJob.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in TrainingJob.Status.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

        durations = [
            (finished - started).total_seconds()
            for status, started, finished in TrainingJob.objects.filter(
                status__in=TrainingJob.FINISHED, started_at__isnull=False, finished_at__isnull=False
            ).values_list("status", "started_at", "finished_at")
        ]
        buckets = [(str(bound), sum(1 for d in durations if d <= bound)) for bound in JOB_DURATION_BUCKETS]
        buckets.append(("+Inf", len(durations)))
        histogram = HistogramMetricFamily(
            "audioml_training_job_duration_seconds", "Wall time of finished training jobs"
        )
        histogram.add_metric([], buckets, sum(durations))
        yield histogram

        queue = GaugeMetricFamily("audioml_task_queue_length", "Tasks waiting in the django-q2 queue", labels=["queue"])
        for name, count in OrmQ.objects.values_list("key").annotate(n=Count("id")).values_list("key", "n"):
            queue.add_metric([name], count)
        queued_jobs = GaugeMetricFamily("audioml_training_jobs_waiting", "Training jobs waiting for a worker")
        queued_jobs.add_metric([], counts.get(TrainingJob.Status.QUEUED, 0))
        yield queue
        yield queued_jobs


def render_metrics() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
