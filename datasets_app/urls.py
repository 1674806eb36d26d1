from django.urls import path

from datasets_app import views

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
]
