"""The Django admin for staff: the catalog, orders and customers.

Saving or deleting a product invalidates its cached page, the list and home once the
transaction commits, so shoppers never see the old price from the SDK's cache.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction

from examples.django_shop.shop.models import Customer, Order, OrderItem, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "sku", "name", "category", "price_cents", "stock", "featured")
    list_filter = ("category", "featured")
    search_fields = ("sku", "name")
    ordering = ("id",)

    def save_model(self, request: Any, obj: Product, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _invalidate_on_commit(obj.pk)

    def delete_model(self, request: Any, obj: Product) -> None:
        pk = obj.pk
        super().delete_model(request, obj)
        _invalidate_on_commit(pk)


def _invalidate_on_commit(pk: int) -> None:
    from examples.django_shop.shop.views import invalidate_product

    transaction.on_commit(lambda: invalidate_product(pk))


class OrderItemInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OrderItem
    extra = 0
    readonly_fields = ("product", "name", "quantity", "price_cents")
    can_delete = False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "customer", "status", "total_cents", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "customer__email", "charge_id")
    readonly_fields = ("id", "customer", "total_cents", "charge_id", "created_at")
    inlines = (OrderItemInline,)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "name", "created_at")
    search_fields = ("email", "name")
    fields = ("email", "name", "created_at")
    readonly_fields = ("created_at",)
