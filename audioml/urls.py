from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve

from audioml import views
from audioml.api import api
from audioml.forms import AdminLoginForm
from registry_app.urls import review_urlpatterns

admin.site.site_header = "AudioML administration"
admin.site.login_form = AdminLoginForm  # failed logins throttled like the panel's
admin.site.site_title = "AudioML admin"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.ThrottledLoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/tokens/", views.token_list, name="token-list"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("audit/", views.audit_list, name="audit-list"),
    path("storage/", views.storage_cleanup, name="storage-cleanup"),
    path("datasets/", include("datasets_app.urls")),
    path("training/", include("training_app.urls")),
    path("models/", include("registry_app.urls")),
    path("review/", include(review_urlpatterns)),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    re_path(r"^api/", views.api_not_found),
]

if settings.DEBUG:
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]
handler403 = "audioml.views.permission_denied"
