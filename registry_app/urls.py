from django.urls import path

from registry_app import views

urlpatterns = [
    path("", views.model_list, name="model-list"),
]
