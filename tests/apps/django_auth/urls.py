from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def api_login(request: HttpRequest) -> HttpResponse:
    """Logs in from a JSON body whatever its content type, as many hand-written views do."""
    data = json.loads(request.body or b"{}")
    user = authenticate(username=data.get("username"), password=data.get("password"))
    return JsonResponse({"ok": user is not None}, status=200 if user else 401)


def login_history(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"history": []})


urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/login/", api_login),
    path("login-history", login_history),
]
