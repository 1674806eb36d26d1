from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audioml.panel import staff_required
from training_app.models import TrainingJob


@staff_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = TrainingJob.objects.select_related("dataset")[:100]
    return render(request, "training/job_list.html", {"jobs": jobs})
