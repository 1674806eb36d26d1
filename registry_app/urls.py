from django.urls import path

from registry_app import views

urlpatterns = [
    path("", views.model_list, name="model-list"),
    path("<slug:name>/", views.model_detail, name="model-detail"),
    path("<slug:name>/edit/", views.model_edit, name="model-edit"),
    path("<slug:name>/delete/", views.model_delete, name="model-delete"),
    path("<slug:name>/try/", views.try_it, name="model-try"),
    path("<slug:name>/speak/", views.speak, name="model-speak"),
    path("<slug:name>/aliases/promote/", views.alias_promote, name="alias-promote"),
    path("<slug:name>/aliases/<slug:alias>/rollback/", views.alias_rollback, name="alias-rollback"),
    path("<slug:name>/aliases/<slug:alias>/delete/", views.alias_delete, name="alias-delete"),
    path("<slug:name>/aliases/<slug:alias>/traffic/", views.alias_traffic, name="alias-traffic"),
    path("<slug:name>/logging/", views.model_log_settings, name="model-log-settings"),
    path("<slug:name>/predictions/", views.prediction_list, name="prediction-list"),
    path("<slug:name>/predictions/<int:prediction_id>/audio/", views.prediction_audio, name="prediction-audio"),
    path("<slug:name>/predictions/<int:prediction_id>/flag/", views.prediction_flag, name="prediction-flag"),
    path("<slug:name>/v<int:number>/", views.version_detail, name="version-detail"),
    path("<slug:name>/v<int:number>/edit/", views.version_edit, name="version-edit"),
    path("<slug:name>/v<int:number>/delete/", views.version_delete, name="version-delete"),
    path("<slug:name>/v<int:number>/card/", views.version_card, name="version-card"),
    path("<slug:name>/v<int:number>/card.md", views.version_card_markdown, name="version-card-markdown"),
    path("<slug:name>/v<int:number>/artifacts/<path:artifact>", views.artifact_download, name="artifact-download"),
]

# Review queues of flagged predictions, per dataset (mounted at /review/).
review_urlpatterns = [
    path("", views.review_index, name="review-index"),
    path("<slug:dataset>/", views.review_queue, name="review-queue"),
    path("<slug:dataset>/<int:prediction_id>/", views.review_decide, name="review-decide"),
]
