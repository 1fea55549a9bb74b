"""The shop's routes: the same paths as the FastAPI shop, and the Django admin for staff."""

from __future__ import annotations

from pathlib import Path

import django.contrib.admin
from django.contrib import admin
from django.urls import path, re_path
from django.views.static import serve

from examples.django_shop.shop import views

# The admin's own stylesheets and scripts, served without collectstatic for the demo.
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"

urlpatterns = [
    path("", views.home),
    path("products", views.list_products),
    path("products/<str:id>", views.get_product),
    path("signup", views.signup),
    path("login", views.login),
    path("password-reset", views.password_reset),
    path("cart", views.get_cart),
    path("cart/items", views.add_to_cart),
    path("checkout", views.checkout),
    path("orders/<str:order_id>", views.get_order),
    path("webhooks/payment", views.payment_webhook),
    path("admin/orders", views.admin_orders),
    path("admin/products/<str:id>", views.edit_product),
    path("admin/", admin.site.urls),
    re_path(r"^static/(?P<path>admin/.*)$", serve, {"document_root": ADMIN_STATIC}),
]

handler404 = views.not_found
