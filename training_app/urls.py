from django.urls import path

from training_app import views

urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("new/", views.job_new, name="job-new"),
    path("new/summary/", views.job_new_summary, name="job-new-summary"),
    path("new/preview/", views.job_new_preview, name="job-new-preview"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/log/", views.job_log, name="job-log"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/rerun/", views.job_rerun, name="job-rerun"),
    path("jobs/<int:job_id>/reproduce/", views.job_reproduce, name="job-reproduce"),
]
