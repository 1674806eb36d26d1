from __future__ import annotations

from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audioml.panel import staff_required
from datasets_app.models import Clip, Dataset


@staff_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    active = Q(clips__status=Clip.Status.ACTIVE)
    datasets = Dataset.objects.annotate(
        clip_count=Count("clips", filter=active), total_seconds=Sum("clips__duration", filter=active)
    )
    return render(request, "datasets/dataset_list.html", {"datasets": datasets})
