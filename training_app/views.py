from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audioml.panel import staff_required
from training_app.models import TrainingJob


@staff_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = TrainingJob.objects.select_related("dataset")[:100]
    return render(request, "training/job_list.html", {"jobs": jobs})


@staff_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    from django.shortcuts import get_object_or_404

    job = get_object_or_404(TrainingJob, pk=job_id)
    return render(request, "training/job_list.html", {"jobs": [job]})
