"""The shop's tables: the same shape as the FastAPI shop's, the Django way."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Customer(models.Model):
    """A shopper (staff sign in to the admin with Django's own users)."""

    email = models.CharField(max_length=254, unique=True)
    password_hash = models.CharField(max_length=200)
    name = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.email


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=40)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField()
    featured = models.BooleanField(default=False)
    description = models.TextField(blank=True, default="")

    class Meta:
        # The catalog lists by category in id order; the home page lists featured products.
        indexes = (
            models.Index(fields=["category", "id"], name="shop_product_category_id"),
            models.Index(fields=["featured"], name="shop_product_featured"),
        )

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class CartItem(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["customer", "product"], name="shop_cart_line"),
        )


class Order(models.Model):
    STATUSES = (
        ("awaiting_payment", "awaiting payment"),
        ("paid", "paid"),
        ("payment_failed", "payment failed"),
    )
    id = models.CharField(max_length=32, primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT)
    status = models.CharField(max_length=20, choices=STATUSES)
    total_cents = models.PositiveIntegerField()
    charge_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # A customer's orders, and the admin list filtered by status, newest first.
        indexes = (
            models.Index(fields=["customer", "created_at"], name="shop_order_customer"),
            models.Index(fields=["status", "created_at"], name="shop_order_status"),
            models.Index(fields=["created_at"], name="shop_order_created"),
        )

    def __str__(self) -> str:
        return self.id


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField()

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["order", "product"], name="shop_order_line"),
        )
