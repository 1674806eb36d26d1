from __future__ import annotations

from django.test import Client

from tests.factories import DatasetFactory


def test_metrics_need_authentication(db):
    response = Client().get("/metrics")
    assert response.status_code == 401


def test_metrics_refuse_non_staff(outsider_client):
    assert outsider_client.get("/metrics").status_code == 401


def test_metrics_token_from_settings_is_accepted(db, settings):
    settings.METRICS_TOKEN = "scrape-secret-123"
    assert Client().get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"}).status_code == 200
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_report_requests_jobs_and_queue(api, admin_user):
    from training_app.models import TrainingJob

    dataset = DatasetFactory()
    TrainingJob.objects.create(dataset=dataset, model_name="kws", status=TrainingJob.Status.FAILED)
    TrainingJob.objects.create(dataset=dataset, model_name="kws", status=TrainingJob.Status.FAILED)
    api.get("/api/health")
    body = api.get("/metrics").content.decode()
    assert 'audioml_training_jobs{status="failed"} 2.0' in body
    assert 'audioml_training_jobs{status="succeeded"} 0.0' in body
    assert 'audioml_http_requests_total{method="GET",route="api/health",status="200"}' in body
    assert "audioml_training_job_duration_seconds_bucket" in body
    assert "audioml_prediction_seconds" in body or "audioml_training_jobs_waiting" in body
