"""An included URLconf: templates must carry the prefix it is included under."""

from __future__ import annotations

from django.urls import path, re_path

from tests.apps.django_proj import views

urlpatterns = [
    path("products/<int:pk>", views.product),
    path("users/<slug:username>/orders/<uuid:order>/", views.product),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", views.product),
]
