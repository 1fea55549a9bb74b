from __future__ import annotations

from django.urls import include, path

from tests.apps.django_proj import views

urlpatterns = [
    path("", views.home),
    path("items/<int:pk>/", views.item),
    path("api/v1/", include("tests.apps.django_proj.api_urls")),
    path("sync", views.sync_view),
    path("login", views.login),
    path("books", views.naive_books),
    path("books/few", views.few_books),
    path("boom", views.boom),
    path("boom-sync", views.boom_sync),
    path("boom-local/<int:pk>", views.boom_local),
    path("cached/<int:pk>", views.cached_page),
    path("computed/<int:pk>", views.computed),
    path("computed-async/<int:pk>", views.computed_async),
    path("outbound", views.outbound),
    path("echo", views.echo),
    path("page", views.page),
]
