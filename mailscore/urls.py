"""URL routes."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.core.api import api_not_found
from apps.core.views import health, live, metrics
from apps.review.api import ReviewedMessageViewSet
from apps.verification.api import JobViewSet, ValidateView
from apps.webhooks.api import WebhookViewSet

router = DefaultRouter(trailing_slash=False)
router.include_root_view = False
router.register("messages", ReviewedMessageViewSet, basename="message")
router.register("jobs", JobViewSet, basename="job")
router.register("webhooks", WebhookViewSet, basename="webhook")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(router.urls)),
    path("api/v1/validate", ValidateView.as_view(), name="validate"),
    path(
        "api/v1/schema",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "api/v1/docs",
        SpectacularSwaggerView.as_view(
            url_name="schema",
            authentication_classes=[],
            permission_classes=[],
            # Its inline script carries the Content-Security-Policy nonce.
            template_name="core/api_docs.html",
        ),
        name="api-docs",
    ),
    path("health", health, name="health"),
    path("health/live", live, name="health-live"),
    # Not django_prometheus.urls: its view reads only the multiprocess files, and this one adds
    # what is read at scrape (queues, partitions, retention).
    path("metrics", metrics, name="metrics"),
    # Keep last: any other path under /api/ gets a JSON 404 in the API's error shape.
    re_path(r"^api(?:/|$)", api_not_found),
]
