from django.urls import path

from datasets_app import views

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
    path("<slug:name>/", views.dataset_detail, name="dataset-detail"),
    path("<slug:name>/settings/", views.dataset_settings, name="dataset-settings"),
    path("<slug:name>/delete/", views.dataset_delete, name="dataset-delete"),
    path("<slug:name>/stats/", views.dataset_stats_page, name="dataset-stats"),
    path("<slug:name>/export/", views.dataset_export, name="dataset-export"),
    path("<slug:name>/upload/", views.dataset_upload, name="dataset-upload"),
    path("<slug:name>/trash/empty/", views.dataset_empty_trash, name="dataset-empty-trash"),
    path("<slug:name>/clips/bulk/", views.clips_bulk, name="clips-bulk"),
    path("<slug:name>/clips/<int:clip_id>/", views.clip_detail, name="clip-detail"),
    path("<slug:name>/clips/<int:clip_id>/edit/<slug:field>/", views.clip_field, name="clip-field"),
    path("<slug:name>/clips/<int:clip_id>/trash/", views.clip_trash, name="clip-trash"),
    path("<slug:name>/clips/<int:clip_id>/restore/", views.clip_restore, name="clip-restore"),
    path("<slug:name>/clips/<int:clip_id>/audio/", views.clip_audio, name="clip-audio"),
]
