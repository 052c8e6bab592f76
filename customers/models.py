"""What we hold about a merchant's customers: customers, products, orders, reviews."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from clmsite.tenancy import TenantOwnedModel, tenant_field

MONEY = {"max_digits": 14, "decimal_places": 2}
# A sum of many amounts, each under parsing.MAX_MONEY: a customer's lifetime spend. Twelve
# digits before the point overflowed after ten orders at the largest amount a file may hold,
# and every later import of that customer failed; eighteen take ten million such orders.
MONEY_TOTAL = {"max_digits": 20, "decimal_places": 2}


class IdentifierField(models.CharField):
    """A merchant's id for a row (customer id, order id, sku): opaque text compared byte by byte.

    On PostgreSQL the column gets the "C" collation. A linguistic collation (a database
    created with en_US.UTF-8 or C.UTF-8) sorts through strcoll: every unique-index insert, sort
    and merge on these ids pays for it, which made up a quarter of a big import's server time,
    and ids have no language to sort by. SQLite compares bytes already (BINARY)."""

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            params["collation"] = "C"
        return params


class Customer(TenantOwnedModel):
    tenant = tenant_field(bulk=True)
    external_id = IdentifierField(max_length=128)
    email = models.CharField(max_length=254, blank=True, default="")
    name = models.CharField(max_length=200, blank=True, default="")
    country = models.CharField(max_length=64, blank=True, default="")
    first_seen = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # Aggregates kept up to date by every import (set-based), so lists and dashboards
    # never recompute them per request.
    order_count = models.PositiveIntegerField(default=0)
    total_spent = models.DecimalField(default=0, **MONEY_TOTAL)
    first_order_at = models.DateTimeField(null=True, blank=True)
    last_order_at = models.DateTimeField(null=True, blank=True)
    review_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "external_id"], name="uniq_customer_external_id")]
        indexes = [
            models.Index(fields=["tenant", "last_order_at"], name="customer_tenant_last_order"),
            models.Index(fields=["tenant", "total_spent", "id"], name="customer_tenant_spent_id"),
            models.Index(fields=["tenant", "order_count", "id"], name="customer_tenant_orders_id"),
        ]
        ordering = ["external_id"]

    def __str__(self) -> str:
        return self.name or self.email or self.external_id

    @property
    def display_name(self) -> str:
        return self.name or self.email or f"Customer {self.external_id}"


class Product(TenantOwnedModel):
    tenant = tenant_field(bulk=True)
    sku = IdentifierField(max_length=128)
    name = models.CharField(max_length=300, blank=True, default="")
    category = models.CharField(max_length=128, blank=True, default="")
    price = models.DecimalField(null=True, blank=True, **MONEY)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "sku"], name="uniq_product_sku")]
        indexes = [models.Index(fields=["tenant", "category"], name="product_tenant_category")]
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.name or self.sku


class Order(TenantOwnedModel):
    # Statuses that are not a sale: left out of the customer's totals, the dashboard's
    # revenue, the models' features and the campaigns' outcomes. A failed payment
    # (WooCommerce's "failed") and a voided one (Shopify's "voided") never were a sale.
    NOT_REVENUE = ("cancelled", "refunded", "failed", "voided")
    # Statuses that the usual platforms give a sale (paid, on its way, or done): any other
    # counts as a sale too, and an import names it, in case it is not one.
    # Unpaid states (pending, on-hold, authorized) are not among them: they often never become sales.
    SALE_STATUSES = ("completed", "complete", "paid", "processing", "shipped", "delivered", "fulfilled", "partially_fulfilled", "unfulfilled",
                     "partially_shipped", "closed", "open", "partially_paid", "partially_refunded", "archived")

    tenant = tenant_field(bulk=True)
    external_id = IdentifierField(max_length=128)
    # No index of its own: (customer, ordered_at) below serves every lookup by customer.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders", db_index=False)
    ordered_at = models.DateTimeField()
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, blank=True, default="")
    status = models.CharField(max_length=32, blank=True, default="completed")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "external_id"], name="uniq_order_external_id")]
        indexes = [
            models.Index(fields=["tenant", "ordered_at"], name="order_tenant_time"),
            models.Index(fields=["customer", "ordered_at"], name="order_customer_time"),
        ]
        ordering = ["-ordered_at", "external_id"]

    def __str__(self) -> str:
        return f"Order {self.external_id}"


class OrderItem(TenantOwnedModel):
    tenant = tenant_field(bulk=True)
    # No index of its own: the unique (order, line_no) serves every lookup by order.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items", db_index=False)
    # Position of the line in its order, in file order: the key that makes re-imports idempotent.
    line_no = models.PositiveIntegerField()
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="order_items")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "line_no"], name="uniq_order_line")]
        indexes = [models.Index(fields=["tenant", "product"], name="item_tenant_product")]
        ordering = ["order", "line_no"]


class Review(TenantOwnedModel):
    tenant = tenant_field(bulk=True)
    external_id = IdentifierField(max_length=128)
    # No index of its own: (customer, created_at) below serves every lookup by customer.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="reviews", db_index=False)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews")
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    # Written by the sentiment model (modeling.sentiment); blank until a model has scored it.
    sentiment = models.CharField(max_length=8, blank=True, default="", db_default="", choices=[("positive", "Positive"), ("neutral", "Neutral"), ("negative", "Negative")])
    sentiment_score = models.FloatField(null=True, blank=True, help_text="from -1 (negative) to 1 (positive)")
    aspect = models.CharField(max_length=16, blank=True, default="", db_default="", help_text="what the review is about (modeling/review_insight.py)")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="uniq_review_external_id"),
            models.CheckConstraint(
                condition=models.Q(rating__isnull=True) | models.Q(rating__gte=1, rating__lte=5), name="review_rating_1_5"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="review_tenant_time"),
            models.Index(fields=["customer", "created_at"], name="review_customer_time"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Review {self.external_id}"
