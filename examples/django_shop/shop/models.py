"""The shop's tables: the same shape as the FastAPI shop's, the Django way.

Money is in 64-bit columns (a large cart passes 2**31 cents); prices and stock carry the
bounds the API checks (`examples/shopinput.py`), so the admin's forms refuse what the API does.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from examples.shopinput import MAX_PRICE_CENTS, MAX_STOCK


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
    price_cents = models.PositiveBigIntegerField(validators=[MaxValueValidator(MAX_PRICE_CENTS)])
    stock = models.PositiveIntegerField(validators=[MaxValueValidator(MAX_STOCK)])
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
    total_cents = models.PositiveBigIntegerField()
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
    price_cents = models.PositiveBigIntegerField()

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["order", "product"], name="shop_order_line"),
        )
