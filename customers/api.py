"""REST endpoints for customer data. Thin: parse, call a service, serialize."""

from __future__ import annotations

import json
import re
from typing import Any

import django_filters
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, UnsupportedMediaType, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from clmsite.api import (
    NON_FIELD_ERRORS,
    ImportWordsMixin,
    TenantViewSet,
    api_path,
    created_at,
    json_type_name,
    refuse_unknown_fields,
    refuse_unknown_query_params,
    with_article,
)
from clmsite.datacache import bump_data_version
from clmsite.filters import ChoiceFilter, ClmFilterSet, UTCDateTimeFilter, WholeNumberFilter
from clmsite.models import Role
from clmsite.parsers import JSONParser
from customers.models import Customer, Order, OrderItem, Product, Review
from customers.services import parsing
from customers.services.import_jobs import do_start_import
from customers.services.imports import (
    API_ANSWER_KEYS,
    ATTRIBUTES_MAX,
    KINDS,
    NOTHING_IMPORTED,
    SPECS,
    ImportResult,
    RecordExists,
    RowError,
    attribute_problem,
    column_name,
    import_rows,
    misspelt_columns,
)
from customers.services.queries import order_lines, ordered_as
from customers.services.records import RecordGone, do_delete_record, do_set_order_status
from modeling.models import Job
from modeling.review_insight import aspect_labels


class StampedSerializer(ImportWordsMixin, serializers.ModelSerializer):
    """An edit writes only what changes, and stamps ``updated_at`` only then, as an import
    leaves an unchanged row alone (incremental sync reads ``updated_at``). A change refreshes
    the shop's cached pages: a product's category and a review's rating feed the dashboard."""

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        if all(getattr(instance, name) == value for name, value in validated_data.items()):
            return instance
        instance = super().update(instance, {**validated_data, "updated_at": timezone.now()})
        bump_data_version(instance.tenant_id)
        return instance


class MoneyField(serializers.DecimalField):
    """An amount read as an import reads one (``parsing.parse_money``: to the cent, not
    negative, no scientific notation, thousands separated by commas allowed); ``null``
    clears it, and a blank is refused (an import's blank keeps the stored value, which a
    PATCH does by leaving the field out)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=14, decimal_places=2, min_value=0, allow_null=True, **kwargs)  # as the model's MONEY

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if isinstance(data, str) and not data.strip():  # DRF reads a blank as null: here it would clear the amount
            raise serializers.ValidationError("Send an amount, or null to clear it; leave the field out to keep it.")
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> Any:
        try:
            return parsing.parse_money(str(data))
        except (parsing.FieldError, ArithmeticError, ValueError) as exc:
            raise serializers.ValidationError(str(exc) if isinstance(exc, parsing.FieldError) else f"'{str(data)[:40]}' is not an amount") from None


class ProductSerializer(StampedSerializer):
    price = MoneyField(required=False, help_text="to the cent, 0 or more (as a products file's: 1,234.50 reads as 1234.50); null clears it")

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "category", "price", "created_at", "updated_at"]
        read_only_fields = ["id", "sku", "created_at", "updated_at"]  # PATCH changes name, category and price, as a products file does


class OrderItemSerializer(serializers.ModelSerializer):
    # null for a line without a product (its file left out the sku)
    sku = serializers.CharField(source="product.sku", allow_null=True, read_only=True)
    product_name = serializers.CharField(source="product.name", allow_null=True, read_only=True)

    class Meta:
        model = OrderItem
        fields = ["line_no", "sku", "product_name", "quantity", "unit_price", "amount"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)
    items = OrderItemSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = ["id", "external_id", "customer", "customer_external_id", "ordered_at", "amount", "currency", "status", "items", "updated_at"]
        read_only_fields = [f for f in fields if f != "status"]  # PATCH changes the status only; the rest comes from imports
        extra_kwargs = {"status": {"help_text": "as imported, in lower case (completed unless the file says otherwise); cancelled, refunded, failed and voided orders "
                                                "are neither purchases nor spend. PATCH it when the shop cancels or refunds an order."}}

    def validate_status(self, value: str) -> str:
        """Parsed as an import parses it (``Canceled`` is cancelled); blank is refused, as there is no stored value to keep."""
        try:
            status = parsing.parse_status(value)
        except parsing.FieldError as exc:
            raise serializers.ValidationError(str(exc)) from None
        if not status:
            raise serializers.ValidationError("An order needs a status (completed, cancelled, refunded…).")
        if status not in (*Order.SALE_STATUSES, *Order.NOT_REVENUE) and not Order.objects.filter(status=status).exists():
            # An import takes a shop's own statuses as sales and names them in its result; an edit has
            # no result to name them in, and a typo ("7", "refundd") would count the order as a sale.
            # A status the shop's orders already have (an imported "pending") is its own, not a typo.
            raise serializers.ValidationError(f"'{parsing.shorten(status)}' is not a status this app knows: a sale ({', '.join(Order.SALE_STATUSES[:4])}…) "
                                              f"or {', '.join(Order.NOT_REVENUE)}, or one of this shop's orders has. An import takes a shop's own statuses (as sales) and names them.")
        return status


class ReviewSerializer(StampedSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)
    sku = serializers.CharField(source="product.sku", allow_null=True, read_only=True)
    # Declared, as a read-only model field would lose allow_blank and the schema the blank.
    sentiment = serializers.ChoiceField(choices=Review._meta.get_field("sentiment").choices, allow_blank=True, read_only=True,
                                        help_text="positive, neutral or negative; blank until a scoring has read its text (again after the text changes)")

    class Meta:
        model = Review
        fields = ["id", "external_id", "customer", "customer_external_id", "sku", "rating", "text", "created_at", "sentiment", "sentiment_score", "aspect", "updated_at"]
        read_only_fields = [f for f in fields if f not in {"rating", "text"}]  # PATCH changes the rating and the text, as a reviews file does
        extra_kwargs = {
            "rating": {"min_value": 1, "max_value": 5, "help_text": "1 to 5, or null for none"},
            "text": {"allow_blank": False, "max_length": 20_000, "help_text": "a changed text is read again: sentiment and aspect are blank until the next scoring"},
            "sentiment_score": {"help_text": "from -1 (negative) to 1 (positive); null until a scoring has read its text"},
            "aspect": {"help_text": "what the review is about: delivery, quality, fit, price, service or other; blank until a scoring has read its text"},
        }

    def update(self, instance: Review, validated_data: dict[str, Any]) -> Review:
        if validated_data.get("text", instance.text) != instance.text:  # read again by the next scoring, as an import's changed review is
            validated_data.update(sentiment="", sentiment_score=None, aspect="")
        return super().update(instance, validated_data)


# The customers file's own columns: an import never makes them attributes.
CUSTOMER_COLUMNS = frozenset(column.name for column in SPECS["customers"].columns)


class CustomerSerializer(ImportWordsMixin, serializers.ModelSerializer):
    remove_attributes = serializers.ListField(
        child=serializers.CharField(), write_only=True, required=False, max_length=1000,
        help_text="Names of attributes to delete (as `attributes` names them; a name the customer does not have is no error). "
        "`attributes` only adds and changes: a key left out, `null` or `\"\"` keeps its value, as a blank cell does.",
    )

    class Meta:
        model = Customer
        fields = [
            "id", "external_id", "email", "name", "country", "first_seen", "attributes", "remove_attributes",
            "order_count", "total_spent", "first_order_at", "last_order_at", "review_count", "created_at", "updated_at",
        ]
        # Writable fields are an explicit allow-list; tenant, ids and timestamps never are.
        read_only_fields = [f for f in fields if f not in {"email", "name", "country", "attributes", "remove_attributes"}]
        extra_kwargs = {"first_seen": {"help_text": "when the customer signed up (the `created_at` of a customers file or bulk row), and never after their "
                                                    "earliest order or review; blank when neither is known"},
                        "created_at": {"help_text": "when this row was first loaded into the app (not the customer's sign-up: that is `first_seen`)"}}

    def validate_attributes(self, value: Any) -> dict[str, str]:
        """The attributes as an import stores them: names as a header's (column_name: no case,
        spaces and hyphens as underscores), values as text (a number as written, true/false for
        a boolean), stripped; a blank value keeps the stored one, as a blank cell does.
        ``update`` merges them into the stored attributes."""
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        attributes: dict[str, str] = {}
        problems: dict[str, list[str]] = {}
        seen: set[str] = set()
        for key, raw in value.items():
            name = column_name(key)
            text = "" if raw is None else json.dumps(raw) if isinstance(raw, bool) else str(raw).strip()
            if isinstance(raw, dict | list):
                problem: str | None = f"must be a string, a number or true/false, not a JSON {'object' if isinstance(raw, dict) else 'list'}"
            elif not name:
                problem = "an attribute needs a name"
            elif name in CUSTOMER_COLUMNS:
                problem = f"{name} is a column of the customer, not an attribute"
            elif name in API_ANSWER_KEYS["customers"]:  # as a bulk row refuses it, so that what PATCH stored a bulk row takes back
                problem = f"{name} {API_ANSWER_KEYS['customers'][name]}"
            elif name in seen:
                problem = f"names the same attribute as another key ({name}); send one of them"
            else:
                problem = attribute_problem(name, text)
            seen.add(name)
            if problem:
                problems[key] = [problem]
            elif text:
                attributes[name] = text
        if problems:
            raise serializers.ValidationError(problems)
        return attributes

    def validate_remove_attributes(self, value: list[str]) -> list[str]:
        names = [column_name(raw) for raw in value]
        if not all(names):
            raise serializers.ValidationError("an attribute needs a name")
        return names

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        both = sorted(set(data.get("attributes", {})) & set(data.get("remove_attributes", [])))
        if both:
            raise serializers.ValidationError({"remove_attributes": [f"{', '.join(both)} is also set in attributes; send it in one of them"]})
        return data

    def validate_country(self, value: str) -> str:
        return parsing.parse_country(value)

    def validate_email(self, value: str) -> str:
        """The import's own check, so an edit cannot store what an import refuses."""
        try:
            return parsing.parse_email(value) if value.strip() else ""
        except parsing.FieldError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def update(self, instance: Customer, validated_data: dict[str, Any]) -> Customer:
        with transaction.atomic():
            removed = validated_data.pop("remove_attributes", [])
            if "attributes" in validated_data or removed:
                # Merged as an import merges them: a key the request leaves out keeps its value.
                # The row is locked so that an import running meanwhile is not undone.
                stored = Customer.objects.select_for_update().values_list("attributes", flat=True).get(pk=instance.pk)
                merged = {**(stored or {}), **validated_data.get("attributes", {})}
                # Compared as names are read, so a key stored before names were (``Loyalty Tier``) goes too.
                kept = {name: value for name, value in merged.items() if column_name(name) not in removed}
                # Refused only when it adds past the cap: imports merge without one (each file row
                # is capped), so a customer may hold more, and its existing keys stay editable.
                if len(kept) > max(ATTRIBUTES_MAX, len(stored or {})):
                    raise serializers.ValidationError({"attributes": [f"A customer keeps at most {ATTRIBUTES_MAX} attributes; this would make {len(kept):,}. "
                                                                      "Remove some with remove_attributes."]})
                validated_data["attributes"] = kept
            if all(getattr(instance, name) == value for name, value in validated_data.items()):
                return instance  # nothing changes, so neither does updated_at (as an import leaves an unchanged row)
            return super().update(instance, {**validated_data, "updated_at": timezone.now()})


# A customer's page holds its latest orders and reviews; the lists behind its links hold every one.
DETAIL_LATEST = 100


class CustomerDetailSerializer(CustomerSerializer):
    orders = serializers.SerializerMethodField(help_text=f"The latest {DETAIL_LATEST} orders, newest first; `orders_url` pages through all of them.")
    reviews = serializers.SerializerMethodField(help_text=f"The latest {DETAIL_LATEST} reviews, newest first; `reviews_url` pages through all of them.")
    orders_url = serializers.SerializerMethodField(help_text="The order list filtered to this customer.")
    reviews_url = serializers.SerializerMethodField(help_text="The review list filtered to this customer.")

    class Meta(CustomerSerializer.Meta):
        fields = [*CustomerSerializer.Meta.fields, "orders", "orders_url", "reviews", "reviews_url"]

    @extend_schema_field(OrderSerializer(many=True))
    def get_orders(self, customer: Customer) -> list[dict[str, Any]]:
        orders = customer.orders.prefetch_related(order_lines()).order_by("-ordered_at")[:DETAIL_LATEST]
        return OrderSerializer(orders, many=True).data

    @extend_schema_field(ReviewSerializer(many=True))
    def get_reviews(self, customer: Customer) -> list[dict[str, Any]]:
        return ReviewSerializer(customer.reviews.select_related("product").order_by("-created_at")[:DETAIL_LATEST], many=True).data

    def _list_url(self, name: str, customer: Customer) -> str:
        url = f"{api_path(name)}?customer={customer.pk}"
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url

    def get_orders_url(self, customer: Customer) -> str:
        return self._list_url("order-list", customer)

    def get_reviews_url(self, customer: Customer) -> str:
        return self._list_url("review-list", customer)


class CustomerFilter(ClmFilterSet):
    # min and max include their value; a date "after" includes its day and "before" excludes it
    # (a half-open range), as a saved segment's filters do (modeling.insights.apply_filters).
    min_orders = WholeNumberFilter(field_name="order_count", lookup_expr="gte", label="orders at least (inclusive)")
    max_orders = WholeNumberFilter(field_name="order_count", lookup_expr="lte", label="orders at most (inclusive)")
    min_spent = django_filters.NumberFilter(field_name="total_spent", lookup_expr="gte", label="total spent at least (inclusive)")
    max_spent = django_filters.NumberFilter(field_name="total_spent", lookup_expr="lte", label="total spent at most (inclusive)")
    last_order_after = UTCDateTimeFilter(field_name="last_order_at", lookup_expr="gte",
                                         label="last order at or after this date-time (inclusive); a date alone is the shop's midnight, so its day is included")
    last_order_before = UTCDateTimeFilter(field_name="last_order_at", lookup_expr="lt",
                                          label="last order before this date-time (exclusive); a date alone is the shop's midnight, so its day is excluded")
    country = django_filters.CharFilter(method="filter_country", label="a two-letter code, a three-letter code or an English name, without case (USA and us find US)")
    email = django_filters.CharFilter(lookup_expr="iexact", label="compared without case, as mail servers compare addresses in practice")

    class Meta:
        model = Customer
        fields = {"external_id": ["exact"], "country": ["exact"], "email": ["exact"], "updated_at": ["gte", "lt"]}

    def filter_country(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(parsing.country_matches("country", value))


class OrderFilter(ClmFilterSet):
    # The customer's id as the files and the bulk rows have it; ``customer`` is our numeric id.
    customer_id = django_filters.CharFilter(field_name="customer__external_id", label="the customer's id as imported (customer_id)")
    order_id = django_filters.CharFilter(field_name="external_id", label="the order's id as imported (order_id), exactly: a sync's lookup by its own number")
    status = django_filters.CharFilter(method="filter_status", label="as imported, compared without case (cancelled, canceled and Cancelled alike)")

    class Meta:
        model = Order
        fields = {"ordered_at": ["gte", "lt"], "customer": ["exact"], "updated_at": ["gte", "lt"]}

    def filter_status(self, queryset: Any, name: str, value: str) -> Any:
        """The status as an import stores it (lower case, its spellings of cancelled and refunded ours)."""
        try:
            return queryset.filter(status=parsing.parse_status(value))
        except parsing.FieldError as exc:
            raise serializers.ValidationError({"status": [str(exc)]}) from None


class ReviewFilter(ClmFilterSet):
    customer_id = django_filters.CharFilter(field_name="customer__external_id", label="the customer's id as imported (customer_id)")
    review_id = django_filters.CharFilter(field_name="external_id", label="the review's id as imported (review_id), exactly")
    aspect = ChoiceFilter(choices=list(aspect_labels().items()))
    # Ratings are 1 to 5: a 0 or a 6 is a mistake to name, not an empty list.
    rating = WholeNumberFilter(validators=[MinValueValidator(1), MaxValueValidator(5)])
    rating__gte = WholeNumberFilter(field_name="rating", lookup_expr="gte", validators=[MinValueValidator(1), MaxValueValidator(5)])
    rating__lte = WholeNumberFilter(field_name="rating", lookup_expr="lte", validators=[MinValueValidator(1), MaxValueValidator(5)])

    class Meta:
        model = Review
        fields = {"rating": ["exact", "gte", "lte"], "created_at": ["gte", "lt"], "customer": ["exact"], "sentiment": ["exact"], "updated_at": ["gte", "lt"]}


BULK_RESULT = inline_serializer(
    "BulkImportResult",
    fields={
        "kind": serializers.CharField(),
        "ok": serializers.BooleanField(),
        "rows": serializers.IntegerField(),
        "created": serializers.IntegerField(),
        "updated": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(),
        "details": serializers.DictField(child=serializers.IntegerField(), help_text="orders: lines (the rows sent), new_customers, new_products, order_lines_written, and "
                                         "repeated_lines when a line repeats the one before; reviews: new_customers, new_products"),
        "ignored_columns": serializers.ListField(child=serializers.CharField(), help_text="keys of the rows this kind does not use (customers keep theirs as attributes)"),
        "attribute_columns": serializers.ListField(child=serializers.CharField(), help_text="customers: the extra keys of the rows, as the attribute names they were kept as"),
        "unusual_statuses": serializers.DictField(child=serializers.IntegerField(), help_text="orders: each status the app does not know (neither a usual sale's nor "
                                                  "cancelled, refunded, failed or voided) with its number of orders: they count as sales, and the message names them"),
        "sales_again": serializers.DictField(child=serializers.CharField(), help_text="orders: each order stored as cancelled, refunded, failed or voided that the "
                                             "rows make a sale again, with its change (`refunded → paid`): a correction, or an older export after a newer one"),
        "other_currencies": serializers.DictField(child=serializers.IntegerField(), help_text="orders: each currency other than the shop's (GET /api/v1/shop/) "
                                                  "with its number of orders: totals add amounts as they are, with no exchange rates, and the message says so"),
        "unknown_countries": serializers.DictField(child=serializers.IntegerField(), help_text="customers: each country that names no country the app knows "
                                                   "(kept as written; the country filters find it only so) with its number of customers; the message names them"),
        "message": serializers.CharField(),
        "detail": serializers.CharField(required=False, help_text="on a refused request: the same message, where every error body has it"),
        "error_count": serializers.IntegerField(),
        "errors": inline_serializer("BulkRowError", fields={
            "row": serializers.IntegerField(help_text="1 = the first object; 0 = the request itself, such as a bad dry_run"),
            "column": serializers.CharField(help_text="the key (column) at fault; empty for the row or the request as a whole"),
            "message": serializers.CharField()}, many=True),
        "dry_run": serializers.BooleanField(help_text="true for a check (`?dry_run=true`): the counts are what importing the rows would do, and nothing was written"),
        "ids": serializers.DictField(child=serializers.IntegerField(), help_text="each record of the kind the rows name, by its id as stored (customer_id, sku, order_id or "
                                     "review_id, without surrounding spaces), to its numeric `id` in this API (new, updated or unchanged alike); not the customers or "
                                     "products an orders or reviews request created on the way. Empty for a check or a refused request"),
    },
)


# What a column means where its name alone could mislead: a customer's created_at is read back
# as first_seen, and the answer's own created_at is another date (when the row was loaded).
COLUMN_NOTES = {
    ("customers", "created_at"): "when the customer signed up (ISO 8601 or YYYYMMDD); answered as `first_seen`, which is never after the customer's "
                                 "earliest order or review. Not the answer's `created_at`, which is when the row was loaded: sent back, it is a later date.",
}


def bulk_request(kind: str) -> dict[str, Any]:
    """The schema of a bulk upsert's body: a list of rows, or ``{"rows": [...]}`` and no other key;
    a row has the columns of the kind's CSV file (a string or a number each)."""
    spec = SPECS[kind]
    others = ("any other key is an attribute of the customer (a string, a number or true/false)" if kind == "customers"
              else "any other key with a string or a number is ignored (the answer's ignored_columns names it); one with a JSON object or list is a row error")
    cell = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    row = {"type": "object", "description": f"a row of the {kind} file: {others}", "additionalProperties": True, "required": spec.required,
           "properties": {column.name: {**cell, **({"description": COLUMN_NOTES[kind, column.name]} if (kind, column.name) in COLUMN_NOTES else {})}
                          for column in spec.columns}}
    rows = {"type": "array", "items": row}
    dry_run = {"type": "boolean", "description": "true: check the rows and answer what importing them would do, writing nothing (as `?dry_run=true`)"}
    return {"application/json": {"oneOf": [rows, {"type": "object", "properties": {"rows": rows, "dry_run": dry_run}, "required": ["rows"], "additionalProperties": False}]}}


DRY_RUN_PARAMETER = OpenApiParameter(
    "dry_run", OpenApiTypes.BOOL, description="true: check the rows or the file as an import would and answer what importing would do; nothing is written. "
    "Only true, false, 1 or 0.")


def dry_run_flag(value: Any, *, as_text: bool) -> bool:
    """``dry_run`` as given: as text (a query or a form), true, false, 1 or 0; in a JSON body, true or false."""
    if isinstance(value, bool) and not as_text:
        return value
    if as_text and str(value).strip().lower() in {"true", "1", "false", "0"}:
        return str(value).strip().lower() in {"true", "1"}
    given = repr(str(value)[:40]) if as_text else "null" if value is None else f"{json_type_name(value)} ({json.dumps(value)[:40]})"
    raise ValidationError({"dry_run": [f"Must be true or false{', 1 or 0' if as_text else ' (a JSON boolean)'}, not {given}."]})


class DryRunField(serializers.BooleanField):
    """A form's ``dry_run``: true, false, 1 or 0 only, as the bulk endpoints take it (DRF's
    BooleanField also reads on, yes, t and y, and a blank as false)."""

    def get_value(self, dictionary: Any) -> Any:
        if self.field_name in dictionary and dictionary.get(self.field_name) == "":
            return ""  # refused below, as ?dry_run= is: not quietly an import
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> bool:
        try:
            return dry_run_flag(data, as_text=not isinstance(data, bool))
        except ValidationError as exc:
            raise ValidationError(exc.detail["dry_run"]) from None  # type: ignore[call-overload]


class BulkUpsertMixin:
    """``POST …/bulk/`` with a JSON list of rows in the CSV format of the kind. All or nothing.
    Each viewset documents its kind's rows (``bulk_request``)."""

    bulk_kind = ""
    write_query_params = {"bulk": None}  # bulk refuses its own, answering its documented result

    @extend_schema(
        responses={200: BULK_RESULT, 400: BULK_RESULT},
        parameters=[DRY_RUN_PARAMETER],
        description="Upsert rows, keyed on their external ids. Any invalid row rejects the whole request, with each bad row named. "
        "With `?dry_run=true` (or `\"dry_run\": true` beside `rows`) the rows are checked and counted as an import would, and nothing is written.",
    )
    @action(detail=False, methods=["post"], url_path="bulk", parser_classes=[JSONParser])
    def bulk(self, request: Any) -> Response:
        fields: dict[str, Any] = {}
        dry_run = False  # a refusal echoes the check that was asked for, once it is known
        try:
            asked = request.query_params.get("dry_run")
            dry_run = dry_run_flag(asked, as_text=True) if asked is not None else False
            refuse_unknown_query_params(request, ["dry_run"])  # ?validate=1 would otherwise write the rows
            data = request.data
            if isinstance(data, dict) and "rows" not in data:  # one row sent as an object: not "customer_id: unknown field"
                raise ValidationError({"rows": ['Send the rows as a JSON list, or as {"rows": [...]}; for one record, POST it to the list URL.']})
            refuse_unknown_fields(data, ["rows", "dry_run"])  # the {"rows": [...]} form: {"validate": true} alongside is refused, not ignored
            if isinstance(data, dict) and "dry_run" in data:
                in_body = dry_run_flag(data["dry_run"], as_text=False)
                if asked is not None and in_body != dry_run:  # which was meant? Not the check by accident, nor the import.
                    raise ValidationError({"dry_run": [f"The query says dry_run={asked} and the body {json.dumps(in_body)}: send it once."]})
                dry_run = in_body
        except ParseError as exc:  # malformed JSON: the documented 400, a result that imported nothing
            result = ImportResult(self.bulk_kind, False, message=str(exc.detail), dry_run=dry_run)
        except ValidationError as exc:  # an unknown key or parameter: the documented result too, with the field's messages
            fields = exc.detail if isinstance(exc.detail, dict) else {}
            said = {name: " ".join(map(str, messages)) for name, messages in fields.items()}
            # Also in errors as row 0, the request itself: a result key of the same name (dry_run) would hide it beside the fields.
            result = ImportResult(self.bulk_kind, False, message="Nothing was imported: " + "; ".join(f"{name}: {text}" for name, text in said.items()),
                                  errors=[RowError(0, name, text) for name, text in said.items()], error_count=len(said), dry_run=dry_run)
        else:
            result = import_rows(self.tenant, self.bulk_kind, data.get("rows") if isinstance(data, dict) else data, dry_run=dry_run)  # type: ignore[attr-defined]
        if result.ok:
            return Response(result.as_dict())
        if not result.errors:  # refused as a whole (malformed JSON, no rows, too many): row 0 too, so a refusal always has error_count > 0
            result.errors, result.error_count = [RowError(0, "", result.message.removeprefix(NOTHING_IMPORTED))], 1
        return Response({**fields, **result.as_dict(), "detail": result.message}, status=status.HTTP_400_BAD_REQUEST)


def _in_line_order(errors: dict[str, list[str]], lines_key: str | None) -> dict[str, list[str]]:
    """An order's line errors in the lines' order ("Item 1: …" first), whichever check found them."""
    if lines_key in errors:
        errors[lines_key] = sorted(errors[lines_key], key=lambda message: int(match[1]) if (match := re.match(r"Item (\d+):", message)) else 0)
    return errors


# An order's columns that belong to each of its lines: a created order takes them per line, in ``lines``.
LINE_COLUMNS = ("sku", "quantity", "amount", "product_name", "category")


def create_request(kind: str) -> dict[str, Any]:
    """The schema of a create's body: one row of the kind's CSV file, as bulk takes it; an
    order may instead give its lines in ``lines``."""
    row = bulk_request(kind)["application/json"]["oneOf"][0]["items"]
    if kind != "customers":  # a key that is not a column is refused, not ignored as bulk ignores it
        row = {**row, "additionalProperties": False, "description": f"a row of the {kind} file"}
    if kind != "orders":
        return {"application/json": row}
    line = {"type": "object", "additionalProperties": False, "required": ["amount"],
            "properties": {name: row["properties"][name] for name in LINE_COLUMNS}}
    lined = {"type": "object", "description": "an order of several lines: the order's columns, and each line's in `lines`", "additionalProperties": False,
             "required": [name for name in row["required"] if name not in LINE_COLUMNS] + ["lines"],
             "properties": {**{name: value for name, value in row["properties"].items() if name not in LINE_COLUMNS},
                            "lines": {"type": "array", "minItems": 1, "items": line}}}
    return {"application/json": {"oneOf": [{**row, "description": "an order of one line, as a row of the orders file"}, lined]}}


def create_schema(kind: str, serializer: Any) -> Any:
    what = {"orders": "an order: a row of the orders file (one line), or its columns with `lines`, a list of each line's `sku, quantity, amount, product_name, category` "
                      "(the order's amount is their sum)"}.get(kind, f"a {kind.removesuffix('s')}: an object with the columns of a row of the {kind} file")
    return extend_schema(
        request=create_request(kind),
        parameters=[OpenApiParameter("Location", OpenApiTypes.URI, location=OpenApiParameter.HEADER, response=[201], description="the new record's URL")],
        responses={201: serializer, 409: inline_serializer(f"{kind.title()}Exists", fields={"detail": serializers.CharField(), "id": serializers.IntegerField()})},
        description=f"Analyst: create {what}, read and checked as an import reads it"
        f"{' (an unknown customer or sku it names is created too)' if kind in ('orders', 'reviews') else ''}. "
        f"201 with the new record as its detail answers it, and its URL in `Location`; 400 with each bad column under its name; "
        f"409 with the record's `id` when the shop has its `{SPECS[kind].key}` already (change it with PATCH, or upsert with bulk).",
    )


def _lines_as_rows(data: dict[str, Any], key: str) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """An order with lines (under ``key``, which reads as ``lines`` as a header reads: "Lines"
    too) as the rows of an orders file: its columns repeated on each line; and a line's keys
    that are not a line's columns, refused under ``key`` and left out of the rows, so that the
    rest is still read and one answer names every problem."""
    lines = data[key]
    if not isinstance(lines, list) or not lines:
        raise ValidationError({key: ["A list of at least one line, each an object of sku, quantity, amount, product_name and category."]})
    not_objects = [f"Item {index}: an object of sku, quantity, amount, product_name and category, not {json_type_name(line)}."
                   for index, line in enumerate(lines, 1) if not isinstance(line, dict)]
    if not_objects:
        raise ValidationError({key: not_objects})
    misplaced = [name for name in data if column_name(str(name)) in LINE_COLUMNS]
    if misplaced:
        raise ValidationError({name: ["Give it for each line, in lines."] for name in misplaced})
    strangers = {f"Item {index}: {name}: Unknown field; a line has {', '.join(LINE_COLUMNS)}." for index, line in enumerate(lines, 1)
                 for name in line if column_name(str(name)) not in LINE_COLUMNS}
    order = {name: value for name, value in data.items() if name != key}
    rows = [{**order, **{name: value for name, value in line.items() if column_name(str(name)) in LINE_COLUMNS}} for line in lines]
    return rows, ({key: sorted(strangers)} if strangers else {})


def refuse(errors: Any) -> None:
    """A create's 400: each field's messages under its name, and ``detail`` saying them all."""
    said = "; ".join(f"{name}: {message}" for name, messages in errors.items() if name != NON_FIELD_ERRORS for message in messages)
    whole = " ".join(str(message) for message in errors.get(NON_FIELD_ERRORS, []))
    raise ValidationError({**{name: messages for name, messages in errors.items() if name != NON_FIELD_ERRORS},
                           NON_FIELD_ERRORS: [whole or f"Nothing was created: {said}"]})


class CreateFromRowMixin:
    """``POST`` to the list: create one record from a row of its kind's CSV format, as bulk
    reads rows, refusing one that exists (409) instead of updating it."""

    bulk_kind = ""

    @staticmethod
    def row_errors(result: ImportResult, lines_key: str | None) -> dict[str, list[str]]:
        """An import's row errors as a create's field errors: a line's under ``lines`` ("Item 2:
        amount: …"), an order's own column once, the row as a whole in the import's own words."""
        errors: dict[str, list[str]] = {}
        for error in result.errors:
            if lines_key is not None and error.column in LINE_COLUMNS:
                errors.setdefault(lines_key, []).append(f"Item {error.row}: {error.column}: {error.message}")
            else:  # an order's own column is on each of its lines: said once
                messages = errors.setdefault(error.column or NON_FIELD_ERRORS, [])
                if error.message not in messages:
                    messages.append(error.message)
        if not result.ok and (NON_FIELD_ERRORS in errors or not errors):  # about the row as a whole ("this looks like a file of orders")
            errors[NON_FIELD_ERRORS] = [result.message.replace(NOTHING_IMPORTED, "Nothing was created: ")]
        return errors

    def create(self, request: Any) -> Response:
        data = request.data
        if hasattr(data, "getlist") and data:  # a form: the rows are JSON, as bulk's
            raise UnsupportedMediaType(request.content_type)
        if not isinstance(data, dict) or hasattr(data, "getlist"):
            raise ValidationError({"detail": f"Send one {self.bulk_kind.removesuffix('s')} as a JSON object; for many, POST a list to bulk/."})
        lines_key = next((str(key) for key in data if column_name(str(key)) == "lines"), None) if self.bulk_kind == "orders" else None
        early: dict[str, Any] = {}
        if self.bulk_kind != "customers":  # bulk ignores such a key and says so; a create would drop it unseen (an order's "items")
            columns = [column.name for column in SPECS[self.bulk_kind].columns] + (["lines"] if self.bulk_kind == "orders" else [])
            unknown = [str(key) for key in data if column_name(str(key)) not in columns]
            if unknown:
                takes = f"{with_article(self.bulk_kind.removesuffix('s'))} takes {', '.join(columns)}."
                meant = misspelt_columns(SPECS[self.bulk_kind], [column_name(key) for key in unknown])  # as an import names a misspelt column
                early = {key: [f"Unknown field; did you mean {meant[column_name(key)]}? {takes.capitalize()}" if column_name(key) in meant else f"Unknown field; {takes}"]
                         for key in unknown}
                data = {key: value for key, value in data.items() if str(key) not in unknown}
        try:
            rows, strangers = _lines_as_rows(data, lines_key) if lines_key is not None else ([data], {})
        except ValidationError as exc:
            refuse({**early, **exc.detail})
        early.update(strangers)
        if early:  # the rest is read too, writing nothing, so that one answer names every problem
            rest = self.row_errors(import_rows(self.tenant, self.bulk_kind, rows, dry_run=True), lines_key)  # type: ignore[attr-defined]
            refuse(_in_line_order({**rest, **{name: messages + rest.get(name, []) for name, messages in early.items()}}, lines_key))
        try:
            result = import_rows(self.tenant, self.bulk_kind, rows, create_only=True)  # type: ignore[attr-defined]
        except RecordExists as exc:
            key, pk = next(iter(exc.ids.items()))
            return Response({"detail": f"This shop has {SPECS[self.bulk_kind].key} {key} already, as id {pk}: change it with PATCH, or upsert it with bulk/.", "id": pk},
                            status=status.HTTP_409_CONFLICT)
        if not result.ok:
            refuse(_in_line_order(self.row_errors(result, lines_key), lines_key))
        instance = self.get_queryset().get(pk=next(iter(result.ids.values())))  # type: ignore[attr-defined]
        return Response(self.get_serializer(instance).data, status=status.HTTP_201_CREATED, headers=created_at(request, self.basename, instance.pk))  # type: ignore[attr-defined]


@extend_schema_view(create=create_schema("customers", CustomerDetailSerializer), bulk=extend_schema(request=bulk_request("customers")))
class CustomerViewSet(CreateFromRowMixin, BulkUpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """Customers: search by id, email, name or order number; filter; order by spend, orders or recency."""

    bulk_kind = "customers"
    search_fields = ["external_id", "email__uicontains", "name__uicontains"]  # accents and case aside
    ordering_fields = ["id", "external_id", "name", "email", "total_spent", "order_count", "last_order_at", "first_order_at", "created_at", "updated_at"]
    ordering = ["external_id"]
    filterset_class = CustomerFilter
    action_roles = {"destroy": Role.ADMIN}

    def get_base_queryset(self) -> Any:
        return Customer.objects.all()

    def search_also(self, query: str) -> Any:
        return ordered_as(query)

    def get_serializer_class(self) -> Any:
        return CustomerDetailSerializer if self.action in ("retrieve", "create") else CustomerSerializer

    def perform_destroy(self, instance: Customer) -> None:
        from modeling.models import CustomerInsight, Segment

        with transaction.atomic():
            held = [pk for pk in CustomerInsight.objects.filter(customer=instance).values_list("learned_segment_id", "rfm_segment_id").first() or () if pk]
            super().perform_destroy(instance)
            # Their segments count one member fewer now, as the members list does, not at the next scoring.
            Segment.objects.filter(pk__in=held, size__gt=0).update(size=F("size") - 1)
        bump_data_version(self.tenant.pk)  # type: ignore[union-attr]


def gone_is_missing(change: Any, *args: Any) -> Any:
    """Run one of ``records``' changes; a record deleted while it waited answers as a missing id."""
    try:
        return change(*args)
    except RecordGone:
        raise NotFound() from None


@extend_schema_view(create=create_schema("orders", OrderSerializer), bulk=extend_schema(request=bulk_request("orders")), partial_update=extend_schema(description="Analyst: change the order's `status` (read as an import reads it) when the shop cancels or refunds it; its customer's order count and spend follow at once. Any other field is read-only."), destroy=extend_schema(description="Admin: delete the order with its lines; its customer's order count, spend and first and last order follow at once. A cancelled or refunded order is better kept with its status."))
class OrderViewSet(CreateFromRowMixin, BulkUpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """The shop's orders with their lines, newest first; filter by customer, status and time. Load them with ``POST /api/v1/orders/bulk/`` or a CSV import.
    PATCH an order's ``status`` when the shop cancels or refunds it; an admin deletes one with its lines. Either way its customer's order count and spend follow at once."""

    bulk_kind = "orders"
    serializer_class = OrderSerializer
    search_fields = ["external_id", "customer__external_id"]
    ordering_fields = ["id", "ordered_at", "amount", "external_id", "updated_at"]
    ordering = ["-ordered_at"]
    action_roles = {"destroy": Role.ADMIN}  # as a customer's
    filterset_class = OrderFilter

    def get_base_queryset(self) -> Any:
        return Order.objects.select_related("customer").prefetch_related(order_lines())

    def perform_update(self, serializer: Any) -> None:
        if "status" in serializer.validated_data:
            serializer.instance = gone_is_missing(do_set_order_status, serializer.instance, serializer.validated_data["status"])

    def perform_destroy(self, instance: Order) -> None:
        gone_is_missing(do_delete_record, instance)


class ProductFilter(ClmFilterSet):
    category = django_filters.CharFilter(lookup_expr="iexact")  # as a customer's country: "shoes" finds "Shoes"
    sku = django_filters.CharFilter(label="the product's sku as imported, exactly")

    class Meta:
        model = Product
        fields = {"category": ["exact"], "updated_at": ["gte", "lt"]}


@extend_schema_view(create=create_schema("products", ProductSerializer), bulk=extend_schema(request=bulk_request("products")), partial_update=extend_schema(description="Analyst: change the product's `name`, `category` or `price` (read as a products file's; null clears it). Any other field is read-only."))
class ProductViewSet(CreateFromRowMixin, BulkUpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TenantViewSet):
    """The shop's product catalogue; filter by category, search by sku or name. Load it with ``POST /api/v1/products/bulk/`` or a CSV import (an orders file creates the products it names).
    PATCH changes a product's name, category or price."""

    bulk_kind = "products"
    serializer_class = ProductSerializer
    search_fields = ["sku", "name__uicontains", "category__uicontains"]  # accents and case aside
    ordering_fields = ["id", "sku", "name", "category", "price", "updated_at"]
    ordering = ["sku"]
    filterset_class = ProductFilter

    def get_base_queryset(self) -> Any:
        return Product.objects.all()


@extend_schema_view(create=create_schema("reviews", ReviewSerializer), bulk=extend_schema(request=bulk_request("reviews")), partial_update=extend_schema(description="Analyst: change the review's `rating` (1–5, null for none) or `text` (a changed text is read again at the next scoring). Any other field is read-only."), destroy=extend_schema(description="Admin: delete the review; its customer's review count follows at once."))
class ReviewViewSet(CreateFromRowMixin, BulkUpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """Product reviews with their rating and the sentiment read from their text; filter by customer, rating, sentiment and time. Load them with ``POST /api/v1/reviews/bulk/`` or a CSV import.
    PATCH changes a review's rating or text (a changed text is read again at the next scoring); an admin deletes one, and its customer's review count follows at once."""

    bulk_kind = "reviews"
    serializer_class = ReviewSerializer
    search_fields = ["external_id", "text", "customer__external_id"]
    ordering_fields = ["id", "created_at", "rating", "updated_at"]
    ordering = ["-created_at"]
    action_roles = {"destroy": Role.ADMIN}  # as a customer's
    filterset_class = ReviewFilter

    def get_base_queryset(self) -> Any:
        return Review.objects.select_related("customer", "product")

    def perform_destroy(self, instance: Review) -> None:
        gone_is_missing(do_delete_record, instance)


class ImportSummarySerializer(serializers.Serializer):
    """What an import did (or a check would do), as a bulk request's result says it; a key is
    left out until it has something (``unusual_statuses`` when an orders file had some)."""

    rows = serializers.IntegerField(required=False)
    created = serializers.IntegerField(required=False)
    updated = serializers.IntegerField(required=False)
    unchanged = serializers.IntegerField(required=False)
    error_count = serializers.IntegerField(required=False)
    details = serializers.DictField(child=serializers.IntegerField(), required=False,
                                    help_text="counts by what was written: lines, new_customers, new_products, order_lines_written, repeated_lines…")
    ignored_columns = serializers.ListField(child=serializers.CharField(), required=False, help_text="columns of the file this kind has no use for")
    attribute_columns = serializers.ListField(child=serializers.CharField(), required=False, help_text="a customers file's extra columns, kept as attributes")
    unusual_statuses = serializers.DictField(child=serializers.IntegerField(), required=False, help_text="statuses that are not a usual sale's, with their orders")
    sales_again = serializers.DictField(child=serializers.CharField(), required=False, help_text="orders that were not sales and are again, with their change")
    other_currencies = serializers.DictField(child=serializers.IntegerField(), required=False, help_text="currencies other than the shop's, with their orders")
    unknown_countries = serializers.DictField(child=serializers.IntegerField(), required=False, help_text="countries the app does not recognise, kept as written, with their customers")


IMPORT_SUMMARY_KEYS = tuple(ImportSummarySerializer().fields)


class ImportSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(source="params.kind", read_only=True)
    filename = serializers.CharField(source="params.filename", read_only=True)
    summary = serializers.SerializerMethodField()
    dry_run = serializers.SerializerMethodField(help_text="true for a check: it wrote nothing, and its summary is what importing the file would do")

    class Meta:
        model = Job
        fields = ["id", "kind", "filename", "dry_run", "state", "progress", "message", "summary", "created_at", "started_at", "finished_at"]
        read_only_fields = fields

    def get_dry_run(self, job: Job) -> bool:
        return job.is_check

    @extend_schema_field(ImportSummarySerializer)
    def get_summary(self, job: Job) -> dict[str, Any]:
        return {k: job.result.get(k) for k in IMPORT_SUMMARY_KEYS if job.result.get(k) not in (None, {}, [])}


@extend_schema_field(OpenApiTypes.BINARY)  # a multipart upload, not a URI (drf-spectacular's FileField)
class UploadField(serializers.FileField):
    pass


class ImportCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KINDS, error_messages={"invalid_choice": f'"{{input}}" is not a kind of import: send one of {", ".join(KINDS)}.'})
    file = UploadField()
    dry_run = DryRunField(default=False, help_text="true (or 1): check the file as an import would and report what importing it would do, writing nothing")


class ImportFilter(ClmFilterSet):
    state = ChoiceFilter(choices=Job.State.choices, help_text="a finished import with row errors is failed; its summary's error_count says how many")
    kind = ChoiceFilter(field_name="params__kind", choices=[(kind, kind) for kind in KINDS])

    class Meta:
        model = Job
        fields = ["state", "kind"]


class ImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """CSV imports run as background jobs: create one, poll its status, read its errors. A
    check (``dry_run``) runs as an import does and writes nothing."""

    serializer_class = ImportSerializer
    filterset_class = ImportFilter
    parser_classes = [MultiPartParser, FormParser]
    write_query_params = {"create": ("dry_run",)}
    ordering = ["-created_at"]
    ordering_fields = ["created_at"]

    def get_base_queryset(self) -> Any:
        return Job.objects.filter(kind=Job.Kind.IMPORT)

    @extend_schema(request={"multipart/form-data": ImportCreateSerializer}, responses={202: ImportSerializer},
                   parameters=[DRY_RUN_PARAMETER, OpenApiParameter("Location", OpenApiTypes.URI, location=OpenApiParameter.HEADER, response=[202], description="the import's URL, to poll")])
    def create(self, request: Any) -> Response:
        if len(request.FILES.getlist("file")) > 1:  # which one was meant? Not the last by accident.
            raise serializers.ValidationError({"file": ["Send one file per import; this request has several."]})
        if twice := [name for name in request.data if name != "file" and len(request.data.getlist(name)) > 1]:
            raise serializers.ValidationError({name: ["Sent more than once: send it once."] for name in twice})
        form = self.validated_form(ImportCreateSerializer, request.data)
        upload = form["file"]
        # As on the bulk endpoints, ?dry_run=true asks for a check too; the form and the query saying two things is a 400.
        dry_run = form["dry_run"]
        if "dry_run" in request.query_params:
            asked = dry_run_flag(request.query_params["dry_run"], as_text=True)
            if "dry_run" in request.data and asked != dry_run:
                raise serializers.ValidationError({"dry_run": [f"The query says dry_run={request.query_params['dry_run']} and the form "
                                                               f"{request.data['dry_run']}: send it once."]})
            dry_run = asked
        job = do_start_import(self.tenant, form["kind"], upload, upload.name, acting_user=request.user, dry_run=dry_run)  # type: ignore[arg-type]
        job.refresh_from_db()
        return Response(ImportSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers=created_at(request, "import", job.pk))  # where to poll its status

    @extend_schema(
        responses={200: inline_serializer("ImportErrors", fields={
            "error_count": serializers.IntegerField(help_text="every error the import found"),
            "errors": inline_serializer("ImportRowError", fields={
                "row": serializers.IntegerField(help_text="the file's line (the header is row 1)"), "column": serializers.CharField(), "message": serializers.CharField(),
            }, many=True, help_text=f"the first {settings.IMPORT_MAX_REPORTED_ERRORS} of them in row order, all an import keeps: fix those and import again to see the next"),
        })}
    )
    @action(detail=True, methods=["get"])
    def errors(self, request: Any, pk: str | None = None) -> Response:
        """An import's row errors. Not paged: it keeps the first errors only, so ``?page`` is refused like any other parameter."""
        refuse_unknown_query_params(request)
        job = self.get_object()
        return Response({"error_count": job.result.get("error_count", 0), "errors": job.result.get("errors", [])})
