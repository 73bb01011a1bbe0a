"""The toolkit's endpoints under /o/ (token, introspect, ...), and a readiness probe."""

from django.http import HttpResponse
from django.urls import include
from django.urls import path


def ready(request):
    """200 once a worker can answer."""
    return HttpResponse("ok")


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("ready", ready),
]
