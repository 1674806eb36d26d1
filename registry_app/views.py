from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audioml.panel import staff_required
from registry_app.models import RegisteredModel


@staff_required
def model_list(request: HttpRequest) -> HttpResponse:
    models = RegisteredModel.objects.all()
    return render(request, "registry/model_list.html", {"models": models})
