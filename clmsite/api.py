"""The API base: every viewset inherits :class:`TenantViewSet`, which resolves the tenant
from the API key (or the session) and scopes every query to it. Subclasses define
``get_base_queryset`` only; the scoping hooks are not theirs to override."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.http import Http404, QueryDict
from django.urls import reverse
from django_filters.widgets import SuffixedMultiWidget
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, filters, mixins, negotiation, pagination, serializers, status, viewsets
from rest_framework.fields import empty
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import exception_handler as drf_exception_handler

from clmsite.filters import ClmFilterBackend, choice_without_case
from clmsite.lookups import nfc
from clmsite.models import ApiKey, Role, Tenant, role_at_least
from clmsite.permissions import request_role, required_role
from clmsite.tenancy import _current_tenant

log = logging.getLogger(__name__)


def request_tenant(request: Any) -> Tenant | None:
    if isinstance(request.auth, ApiKey):
        return request.auth.tenant
    return getattr(request._request, "tenant", None)


class TenantScopedMixin:
    """Resolve the tenant after authentication and make it current for the whole request."""

    tenant: Tenant | None = None

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        # Authenticate first so the tenant comes from the key, then scope, then check roles.
        request.user  # noqa: B018 - triggers authentication
        self.tenant = request_tenant(request)
        if self.tenant is not None:
            self._tenant_token = _current_tenant.set(self.tenant)
            # The budget before DRF's content negotiation, so that a 406 counts and carries the
            # budget's headers as every other answer does.
            self.check_throttles(request)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if self.tenant is None:
            raise exceptions.NotFound() if request.user and request.user.is_authenticated else exceptions.NotAuthenticated()

    def check_permissions(self, request: Any) -> None:
        # The budget first: a request its role refuses counts against it too (a loop of 403s is
        # load all the same), and its answer carries the budget's headers as any other does.
        self.check_throttles(request)
        super().check_permissions(request)  # type: ignore[misc]

    def check_throttles(self, request: Any) -> None:
        if not getattr(request, "_budget_checked", False):  # DRF's initial() asks again after the permissions
            request._budget_checked = True
            super().check_throttles(request)  # type: ignore[misc]

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        token = getattr(self, "_tenant_token", None)
        if token is not None:
            _current_tenant.reset(token)
            self._tenant_token = None
        response["Cache-Control"] = "private, no-store"
        budget = getattr(request, "rate_limit", None)
        if budget is not None:
            response["RateLimit-Limit"], response["RateLimit-Remaining"], response["RateLimit-Reset"] = (str(budget[k]) for k in ("limit", "remaining", "reset"))
        return response


class ImportWordsMixin:
    """A model serializer that refuses a value in the words an import uses for it: "Ensure this
    field has no more than 200 characters" and "Ensure this value is less than or equal to 5"
    beside bulk's "the limit is 200" and "not a rating from 1 to 5" read as two rules."""

    def build_standard_field(self, field_name: str, model_field: Any) -> tuple[Any, dict[str, Any]]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)  # type: ignore[misc]
        if field_name == "rating":
            messages = kwargs.setdefault("error_messages", {})
            messages["min_value"] = messages["max_value"] = "is not a rating from 1 to 5"
        return field_class, kwargs

    def include_extra_kwargs(self, kwargs: dict[str, Any], extra_kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = super().include_extra_kwargs(kwargs, extra_kwargs)  # type: ignore[misc]
        if "max_length" in kwargs:  # the model's or the serializer's own limit
            kwargs["error_messages"] = {**kwargs.get("error_messages", {}), "max_length": "is longer than the limit: the limit is {max_length} characters"}
        return kwargs


class SearchFilter(filters.SearchFilter):
    """DRF's search, documented only where the view has ``search_fields`` (elsewhere it
    searches nothing, so ``?search=`` would be a parameter that does nothing)."""

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return super().get_schema_operation_parameters(view) if getattr(view, "search_fields", None) else []

    def get_search_terms(self, request: Any) -> list[str]:
        try:
            terms = super().get_search_terms(request)
        except exceptions.ValidationError as exc:  # a NUL: named after its parameter, as every filter's error is
            raise exceptions.ValidationError({self.search_param: exc.detail}) from None
        return [nfc(term) for term in terms]  # as imports store text: "José" typed either way finds it

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        """DRF's search, or'ed with the view's ``search_also(query)`` where it has one (the
        customers' order numbers, as the customer list in the UI finds them)."""
        found = super().filter_queryset(request, queryset, view)
        also = getattr(view, "search_also", None)
        terms = self.get_search_terms(request) if also else []
        return found | queryset.filter(also(" ".join(terms))) if terms else found


class OrderingFilter(filters.OrderingFilter):
    """DRF's ordering, except that an unknown field is a 400 naming the allowed ones: DRF
    drops it and answers in the default order, which reads as if the ordering worked."""

    def remove_invalid_fields(self, queryset: Any, fields: list[str], view: Any, request: Any) -> list[str]:
        allowed = self._allowed(queryset, view)
        unknown = [term for term in fields if term and term.removeprefix("-") not in allowed]
        if unknown:
            raise exceptions.ValidationError({self.ordering_param: [f"Cannot order by {', '.join(unknown)}. {self._choices(allowed)}"]})
        return [term for term in fields if term]

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        """Missing values (null) last in either direction, on every database: PostgreSQL put
        them last going up and first going down, SQLite the other way round."""
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        return queryset.order_by(*(F(term[1:]).desc(nulls_last=True) if term.startswith("-") else F(term).asc(nulls_last=True) for term in ordering))

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        parameters[0]["description"] = (f"{self._choices(self._allowed(view.get_queryset(), view))} Any other field is a 400. "
                                        "Missing values (null) come last in either direction. "
                                        "Rows that tie are ordered by `id` (in the direction of the last field), so pages neither skip nor repeat a row.")
        return parameters

    def _allowed(self, queryset: Any, view: Any) -> list[str]:
        return [name for name, _ in self.get_valid_fields(queryset, view)]

    @staticmethod
    def _choices(allowed: list[str]) -> str:
        return f"Allowed: {', '.join(allowed)} (a leading - reverses the order; separate several with commas)."


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's pages, except that a page number that is not one (``abc``, ``0``, ``-1``, ``1.5``) is
    a 400 naming ``page``, as any other malformed parameter is; DRF answered it 404 "Invalid
    page.", which reads as a missing list. A well-formed page past the last stays a 404."""

    page_query_description = "A page number from 1 (or `last`). One that is not a whole number from 1 is a 400; a page past the last is a 404."
    page_size_query_param = "page_size"
    max_page_size = 500
    page_size_query_description = f"Rows per page, from 1 to {max_page_size} (50 when left out); any other value is a 400."

    def get_page_size(self, request: Any) -> int | None:
        """``?page_size=`` from 1 to ``max_page_size``; DRF quietly used its default for any other."""
        raw = (request.query_params.get(self.page_size_query_param) or "").strip()
        if not raw:  # left out, or blank (spaces too) as an empty ?page= is
            return self.page_size
        if not re.fullmatch(r"[0-9]+", raw) or not 1 <= int(raw) <= self.max_page_size:
            raise exceptions.ValidationError({self.page_size_query_param: [f"Not a page size: {raw[:50]!r}; give a whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_page_number(self, request: Any, paginator: Any) -> Any:
        number = super().get_page_number(request, paginator)
        if isinstance(number, str) and not number.strip():  # blank, as DRF reads an empty ?page=: the first
            return 1
        if re.fullmatch(r"[0-9]*[1-9][0-9]*", str(number)):  # "last" is the number of pages by now
            return number
        raise exceptions.ValidationError({self.page_query_param: [f"Not a page number: {str(number)[:50]!r}; a page is a whole number from 1, or last."]})

    # --- The sync walk: ``?ordering=updated_at`` pages continue after the last row read ---
    # A page number counts rows from the start: a row read on page 1 and changed before page 2
    # moved to the end (its updated_at is newer), everything after it moved up one, and page 2
    # began one row late, so one row was never read. Under ``ordering=updated_at`` a ``next`` link
    # names the last row instead (``after``: its updated_at and id), and the next page is the rows
    # after that one in (updated_at, id): a changed row is read again at the end, none is skipped.
    after_query_param = "after"
    after_query_description = ("With `ordering=updated_at` only: the rows after this position, as a `next` link of that "
                               "ordering gives it (the last row's `updated_at` and `id`). Follow `next` rather than building it; "
                               "`page` cannot go with it, and there is no `previous`.")
    sync_ordering = "updated_at"

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        self.request, self.after_rows = request, None
        # updated_at,id is the same order (the walk breaks ties by id): a cursor too, not page numbers.
        self.sync_walk = request.query_params.get("ordering", "").replace(" ", "") in (self.sync_ordering, f"{self.sync_ordering},id") and is_sync_list(view)
        raw = request.query_params.get(self.after_query_param)
        if raw is None:
            return super().paginate_queryset(queryset, request, view)
        if not self.sync_walk:
            raise self.after_error(f"after continues a walk in ordering={self.sync_ordering}: add ?ordering={self.sync_ordering}, or leave after out.")
        if self.page_query_param in request.query_params:
            raise self.after_error("Give after or page, not both: after already says where the page starts.")
        stamp_text, _, pk = raw.rpartition("_")
        try:
            stamp = dt.datetime.strptime(stamp_text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        except ValueError:
            stamp = None
        if stamp is None or not re.fullmatch(r"[0-9]{1,18}", pk):
            raise self.after_error(f"Not a position: {raw[:60]!r}; use the after of a next link (an updated_at, _, an id).")
        size = self.get_page_size(request)
        self.count = queryset.count()
        rows = list(queryset.filter(Q(updated_at__gt=stamp) | Q(updated_at=stamp, pk__gt=int(pk)))[: size + 1])
        self.after_rows, self.after_more = rows[:size], len(rows) > size
        return self.after_rows

    def after_error(self, why: str) -> exceptions.ValidationError:
        return exceptions.ValidationError({self.after_query_param: [why]})

    def get_paginated_response(self, data: Any) -> Response:
        if self.after_rows is None:
            return super().get_paginated_response(data)
        return Response({"count": self.count, "next": self.get_next_link(), "previous": None, "results": data})

    def get_next_link(self) -> str | None:
        if not self.sync_walk:
            return super().get_next_link()
        rows, more = (self.after_rows, self.after_more) if self.after_rows is not None else (self.page.object_list, self.page.has_next())
        if not (more and rows):
            return None
        last = rows[-1]
        position = f"{last.updated_at.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}_{last.pk}"
        return replace_query_param(remove_query_param(self.request.build_absolute_uri(), self.page_query_param), self.after_query_param, position)

    def get_previous_link(self) -> str | None:
        return None if self.sync_walk else super().get_previous_link()  # a walk goes forward only: a page number beside an after read as two ways

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        parameters[0]["schema"] = {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["last"]}]}
        parameters[1]["schema"].update(minimum=1, maximum=self.max_page_size)
        if is_sync_list(view):
            parameters.append({"name": self.after_query_param, "required": False, "in": "query",
                               "description": self.after_query_description, "schema": {"type": "string"}})
        return parameters


def is_sync_list(view: Any) -> bool:
    """A list that offers the sync walk: one ordered by ``updated_at`` (customers, orders, products, reviews)."""
    return getattr(view, "action", None) == "list" and PageNumberPagination.sync_ordering in getattr(view, "ordering_fields", ())


class ContentNegotiation(negotiation.DefaultContentNegotiation):
    """DRF's, except that an unknown ``?format=`` (``csv``) is a 400 naming ``format`` and the
    formats there are, not DRF's 404 "Not found.", which reads as a missing endpoint."""

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            wanted = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE, "")
            formats = ", ".join(dict.fromkeys(renderer.format for renderer in renderers))
            raise exceptions.ValidationError({self.settings.URL_FORMAT_OVERRIDE: [f"No format {wanted[:50]!r}; this API answers {formats}."]}) from None


class ChoiceField(serializers.ChoiceField):
    """DRF's ChoiceField read without case (``HIGH`` is high, as the query filters read it),
    whose refusal also lists the choices: '"bogus" is not one of: ...'."""

    def to_internal_value(self, data: Any) -> Any:
        data = choice_without_case(data, self.choices)
        try:
            return super().to_internal_value(data)
        except exceptions.ValidationError:
            shown = json.dumps(data) if isinstance(data, bool) else str(data)[:40]  # true, not Python's True
            raise exceptions.ValidationError(f'"{shown}" is not one of: {", ".join(str(key) for key in self.choices)}.', code="invalid_choice") from None


class Conflict(exceptions.APIException):
    """The object's state does not allow the request now (a campaign already launched, a job
    already finished): the request itself was well formed, so not a 400."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this."
    default_code = "conflict"


CONFLICT = inline_serializer("Conflict", {"detail": serializers.CharField()})  # one component for every 409


def conflict_response(description: str) -> OpenApiResponse:
    """The schema's 409 of an operation: the ``{"detail": ...}`` every error body has."""
    return OpenApiResponse(CONFLICT, description=description)


def with_tie_break(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """The queryset's ordering ended by its primary key, in the direction of its last term:
    on a value that repeats (``?ordering=amount``) the database may order ties differently
    from one page's query to the next, so that paging skipped some rows and repeated others."""
    terms = list(queryset.query.order_by) or list(queryset.query.get_meta().ordering)
    names = {term.lstrip("-") for term in terms if isinstance(term, str)}
    if names & {"pk", queryset.model._meta.pk.name}:
        return queryset
    last = terms[-1] if terms else "pk"
    descending = last.descending if isinstance(last, OrderBy) else str(last).startswith("-")
    return queryset.order_by(*terms, "-pk" if descending else "pk")


def refuse_unknown_fields(data: Any, writable: Iterable[str], read_only: Iterable[str] = ()) -> None:
    """A body's keys must be fields the operation writes: a misspelt or read-only field would
    otherwise be dropped and answered 200, which reads as if it had been saved."""
    if not isinstance(data, Mapping):
        return  # not an object: the serializer says so
    writable, read_only = set(writable), set(read_only)
    unknown = [str(key) for key in data if key not in writable]
    if unknown:
        takes = f"this operation writes {', '.join(sorted(writable))}." if writable else "this operation writes no fields."
        raise exceptions.ValidationError({key: [f"{'This field is read-only' if key in read_only else 'Unknown field'}; {takes}"] for key in unknown})


QUERY_VALUE_MAX = 1000


def refuse_unknown_query_params(request: Any, accepted: Iterable[str] = (), what: str = "operation") -> None:
    """A query parameter must be one the operation reads (the format override always is): an
    ignored one, such as ``?validate=1`` on a bulk upsert, reads as if it had been obeyed."""
    accepted = {name for name in (api_settings.URL_FORMAT_OVERRIDE, *accepted) if name}
    # A value longer than any id, email or search needs: SQLite refuses a LIKE pattern past
    # 50,000 bytes with an error, which answered a 500.
    long = {name: len(value) for name, values in request.query_params.lists() for value in values if len(value) > QUERY_VALUE_MAX}
    if long:
        raise exceptions.ValidationError({name: [f"{n:,} characters long; a query parameter takes at most {QUERY_VALUE_MAX:,}."] for name, n in long.items()})
    unknown = [name for name in request.query_params if name not in accepted]
    if unknown:
        raise exceptions.ValidationError({name: [f"Unknown query parameter; this {what} takes {', '.join(sorted(accepted))}."] for name in unknown})
    # Each parameter takes one value: with two, one would be dropped without a word
    # (?country=DE&country=US answered the US customers only).
    repeated = {name: len(values) for name, values in request.query_params.lists() if len(values) > 1}
    if repeated:
        raise exceptions.ValidationError({name: [f"Given {n} times; give it once (each parameter takes one value)."] for name, n in repeated.items()})


def missing_boolean_is_default(serializer: serializers.Serializer) -> None:
    """A boolean a form-encoded body leaves out means its default, as in JSON. DRF reads it as
    False (an unticked HTML checkbox is not sent), so that ``skip_running``, on by default, was
    turned off by a form-encoded create that never named it."""
    for field in serializer.fields.values():
        if isinstance(field, serializers.BooleanField) and not field.read_only:
            field.default_empty_html = empty


def json_type_name(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", dict: "a JSON object", list: "a JSON list",
            type(None): "null"}.get(type(value), type(value).__name__)


def _holds_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_holds_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_non_finite(item) for item in value)
    return False


def refuse_wrong_json_types(serializer: serializers.Serializer, data: Any) -> None:
    """A JSON body's types are taken at their word, as the bulk endpoints take them: a text field
    takes a string or a number (an id of digits, as a bulk row's named column does), a switch
    true or false, and no number may be infinite. DRF itself reads ``"yes"`` as true, stores
    ``true`` as the name "True" and ``1e999`` (infinity in Python) as "inf". A form-encoded
    body is all strings, and is read as DRF reads it."""
    if not isinstance(data, dict) or isinstance(data, QueryDict):
        return
    problems = {}
    for key, value in data.items():
        field = serializer.fields.get(key)
        if field is None or field.read_only or value is None:
            continue
        if _holds_non_finite(value):
            problems[key] = ["Holds a number too large to read (such as 1e999)."]
        elif isinstance(field, serializers.BooleanField) and not isinstance(value, bool):
            problems[key] = [f"Must be true or false, not {json_type_name(value)}."]
        elif isinstance(field, serializers.CharField) and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            problems[key] = [f"Must be a string or a number, not {json_type_name(value)}."]
    if problems:
        raise exceptions.ValidationError(problems)


def refuse_bad_fields(serializer: serializers.Serializer, data: Any, writable: Iterable[str], read_only: Iterable[str] = ()) -> None:
    """``refuse_unknown_fields`` and ``refuse_wrong_json_types`` together, with what the
    serializer says of the body's other fields: every error in one answer. One at a time, a
    misspelt field hid a bad value beside it, and fixing one error revealed the next."""
    errors: dict[str, Any] = {}
    for check in (lambda: refuse_unknown_fields(data, writable, read_only), lambda: refuse_wrong_json_types(serializer, data)):
        try:
            check()
        except exceptions.ValidationError as exc:
            errors.update(exc.detail)
    if not errors:
        return
    if isinstance(data, Mapping):
        rest = {key: value for key, value in data.items() if key not in errors}
        probe = type(serializer)(instance=serializer.instance, data=rest, partial=serializer.partial, context=serializer.context)
        if not probe.is_valid():
            for key, messages in probe.errors.items():
                errors.setdefault(key, messages)
    raise exceptions.ValidationError(errors)


def api_path(name: str, *args: Any) -> str:
    """An API route's path with its trailing slash, as the page links (``next``) have it: the
    router takes either (``trailing_slash = "/?"``), and reverse() leaves the slash out."""
    return reverse(name, args=args).rstrip("/") + "/"


def created_at(request: Any, basename: str, pk: Any) -> dict[str, str]:
    """The ``Location`` header of a 201 or 202: the new object's (or the job's) address."""
    return {"Location": request.build_absolute_uri(api_path(f"{basename}-detail", pk))}


def refuse_a_body(request: Any) -> None:
    """An operation that takes no body (launch, cancel, promote) refuses one, as every other
    operation refuses fields it does not write: a ``{"control_share": 0.5}`` sent along must not
    read as applied. Reading the body also answers malformed JSON 400 and a wrong type 415."""
    data = request.data
    if isinstance(data, Mapping):
        refuse_unknown_fields(data, [])
    elif data not in (None, "", b""):
        raise exceptions.ValidationError({"detail": "This operation takes no body."})


class CreateModelMixin(mixins.CreateModelMixin):
    """DRF's create, answering where the new object lives (``Location``), as every create here does."""

    def get_success_headers(self, data: Any) -> dict[str, str]:
        return created_at(self.request, self.basename, data["id"]) if isinstance(data, Mapping) and data.get("id") is not None else {}  # type: ignore[attr-defined]


class RoleSayingSchema(AutoSchema):
    """drf-spectacular's schema, with each write operation's least role said at the end of its
    description (an integrator should not learn it from a 403)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or self.method in SAFE_METHODS or not isinstance(self.view, TenantScopedMixin):
            return operation
        needed = getattr(self.view, "action_roles", {}).get(getattr(self.view, "action", None)) or getattr(self.view, "write_role", Role.ANALYST)
        says = f"Role: {needed} or above ({' > '.join(Role.values)}); a lower one answers 403."
        operation["description"] = f"{operation['description']}\n\n{says}" if operation.get("description") else says
        return operation


class TenantViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    # No PUT: every update is a PATCH of the fields it changes (the README documents no PUT).
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    pagination_class = PageNumberPagination
    content_negotiation_class = ContentNegotiation
    #: Query parameters a list reads itself, besides its filters, search, ordering and page.
    list_query_params: tuple[str, ...] = ()
    #: Query parameters a write action reads, by action; any other is a 400 (``?dry_run=true``
    #: on an edit would otherwise be applied for real). ``None``: the action checks its own.
    write_query_params: dict[str, tuple[str, ...] | None] = {}

    def get_queryset(self) -> Any:
        # The model's default manager is already scoped to the current tenant.
        return self.get_base_queryset()

    def get_base_queryset(self) -> Any:
        raise NotImplementedError

    def get_object(self) -> Any:
        # An id is written in ASCII digits: Python's int() also reads "１２" and " 1", which
        # found object 12 and 1 on some routes; any other spelling is looked up as id 0, which
        # no row has, so that it answers exactly as a missing id does.
        lookup = self.lookup_url_kwarg or self.lookup_field
        if lookup == "pk" and not re.fullmatch(r"[0-9]{1,18}", str(self.kwargs.get(lookup, ""))):
            self.kwargs[lookup] = "0"
        return super().get_object()

    @property
    def filter_backends(self) -> list[Any]:  # type: ignore[override]
        """The list filters act on the list only. Elsewhere (a retrieve, an update, a sub-action
        such as ``stages``) ``get_object`` would apply them to the object's lookup, so that
        ``?stage=lapsed`` made an existing customer's history a 404, and the schema would
        document them for sub-actions whose answer is a list of something else."""
        return [ClmFilterBackend, SearchFilter, OrderingFilter] if self.action == "list" else []

    def filter_queryset(self, queryset: Any) -> Any:
        """A list refuses a query parameter it does not know: ignored, ``?customer_id=`` (where
        the filter is ``customer``) answered every order as if it had filtered them."""
        if self.action == "list":
            refuse_unknown_query_params(self.request, self.accepted_query_params(queryset), "list")
        return super().filter_queryset(queryset)

    def accepted_query_params(self, queryset: Any) -> set[str]:
        """What the list reads: its filters, search (where it has search fields), ordering,
        the page, the format override and what the view reads itself (``list_query_params``)."""
        accepted = {api_settings.URL_FORMAT_OVERRIDE, *self.list_query_params}
        accepted.update(self.page_query_params())
        if is_sync_list(self):
            accepted.add(PageNumberPagination.after_query_param)
        for backend in self.filter_backends:
            if issubclass(backend, ClmFilterBackend):
                filterset = backend().get_filterset_class(self, queryset)
                for name, filter_ in (filterset.base_filters.items() if filterset else ()):
                    widget = filter_.field.widget  # a range filter reads name_min and name_max
                    if isinstance(widget, SuffixedMultiWidget):
                        accepted.update(widget.suffixed(name, suffix) for suffix in widget.suffixes)
                    else:
                        accepted.add(name)
            elif issubclass(backend, filters.SearchFilter) and getattr(self, "search_fields", None):
                accepted.add(backend.search_param)
            elif issubclass(backend, filters.OrderingFilter):
                accepted.add(backend.ordering_param)
        return {name for name in accepted if name}

    def paginate_queryset(self, queryset: Any) -> Any:
        """Every page of every list (sub-lists too) is cut from one total order (``with_tie_break``).
        A sub-list (``/{id}/members/``, ``/{id}/audience/``, ``/{id}/stages/``) has no filters: a
        query parameter other than the page is refused, not ignored (``?stage=lapsed`` answered
        every member as if it had filtered them)."""
        if self.action != "list":
            refuse_unknown_query_params(self.request, self.page_query_params(), "list")
        return super().paginate_queryset(with_tie_break(queryset) if isinstance(queryset, QuerySet) else queryset)

    def page_query_params(self) -> list[str]:
        return [name for name in (getattr(self.paginator, "page_query_param", None), getattr(self.paginator, "page_size_query_param", None)) if name]

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        """A body's unknown and read-only fields are refused (``refuse_unknown_fields``)."""
        serializer = super().get_serializer(*args, **kwargs)
        if "data" in kwargs:
            fields = serializer.fields
            missing_boolean_is_default(serializer)
            refuse_bad_fields(serializer, kwargs["data"], [name for name, field in fields.items() if not field.read_only], [name for name, field in fields.items() if field.read_only])
        return serializer

    def validated_form(self, form_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
        """An action's body, validated by ``form_class`` as ``get_serializer`` validates a model's."""
        form = form_class(data=data)
        missing_boolean_is_default(form)
        refuse_bad_fields(form, data, [name for name, field in form.fields.items() if not field.read_only])
        form.is_valid(raise_exception=True)
        return dict(form.validated_data)

    def permission_denied(self, request: Any, message: str | None = None, code: str | None = None) -> None:
        role = request_role(request)
        needed = self.required_role(request)
        if role is not None and not role_at_least(role, needed):
            caller = f"this key is {with_article(role)} key" if isinstance(request.auth, ApiKey) else f"you are {with_article(role)} in this shop"
            message = f"This needs the {needed} role or above; {caller}."
        super().permission_denied(request, message, code)

    def required_role(self, request: Any) -> str:
        """The least role the action needs (``clmsite.permissions.required_role``)."""
        return required_role(request, self)

    def lacks_method(self, request: Any) -> bool:
        """The route has no such operation (PUT anywhere, DELETE on a list): the 405 comes next."""
        return self.action is None or request.method.lower() not in self.http_method_names

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        """As DRF's, but a method the route lacks is not refused for its ``?format=`` first: it
        is a 405 whatever its query string."""
        return super().perform_content_negotiation(request, force=force or self.lacks_method(request))

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method in SAFE_METHODS or self.lacks_method(request):  # a method the route has not: the 405 comes next
            return
        accepted = self.write_query_params.get(self.action, ())
        if (accepted is not None and request.query_params) or request.method == "DELETE":
            if (self.lookup_url_kwarg or self.lookup_field) in self.kwargs:  # a missing or another shop's id: a 404 first
                self.get_object()
            if accepted is not None:
                refuse_unknown_query_params(request, accepted)
        if request.method == "DELETE":  # a body sent with a delete must not read as a condition of it
            refuse_a_body(request)


class MoneyField(serializers.DecimalField):
    """A money figure the app computes as a float (a value at risk, a report's revenue), written
    as every stored amount is: a decimal string to the cent ("311281.51"), null for none."""

    def __init__(self, **kwargs: Any) -> None:
        # Read-only unless it says whether it is required: the schema marks a read-only field required,
        # which a report's figures that come after the launch are not.
        super().__init__(max_digits=18, decimal_places=2, **{"read_only": "required" not in kwargs, **kwargs})


def money(value: Any) -> str | None:
    """A computed money figure as :class:`MoneyField` writes it, for answers built as dicts."""
    return None if value is None else MoneyField().to_representation(value)


class DayField(serializers.DateField):
    """A day in a body as the query parameters and the CSV files take it: ISO 8601 or
    ``YYYYMMDD`` (a string or a number), with a message that says so, not DRF's format list."""

    default_error_messages = {"invalid": "Enter a date as YYYY-MM-DD (or YYYYMMDD), such as 2024-05-01."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(input_formats=["iso-8601", "%Y%m%d"], **kwargs)

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super().to_internal_value(value)


def with_article(noun: str) -> str:
    """``an admin``, ``a viewer``."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: Django validation errors become 400 and anything unexpected a
    JSON 500 without internals (it is logged with its traceback)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, DataError):  # a value the database cannot hold (out of range): the client's input
        log.warning("API input refused by the database: %s", exc)
        exc = exceptions.ValidationError({"detail": "A value in the request is out of range."})
    if isinstance(exc, TooManyFieldsSent):  # Django's own words name its setting
        return Response({"detail": f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} query parameters or form fields."},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        request = context.get("request")
        bulk = request is None or request.path.rstrip("/").endswith("/bulk")  # other bodies are far below the limit unless something is wrong
        advice = " Send fewer rows per request, or upload a CSV file to /api/v1/imports/." if bulk else ""
        return Response({"detail": f"The request body is larger than {body_limit_mb()} MB.{advice}"},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("Unhandled API error", exc_info=exc)
        response = Response({"detail": "Internal error. It has been logged."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(response.data, list):
        # A ValidationError raised with a bare message list (DRF's filters do): every error
        # body is an object, so that clients read ``detail`` or a field's name alike.
        response.data = {"detail": " ".join(str(message) for message in response.data)}
    elif isinstance(exc, exceptions.ValidationError) and isinstance(response.data, Mapping):
        response.data = _errors_by_field(response.data)
    return response


NON_FIELD_ERRORS = api_settings.NON_FIELD_ERRORS_KEY


def _errors_by_field(errors: Mapping[str, Any]) -> dict[str, Any]:
    """DRF files the errors about a whole body (a list, a number or null where an object
    belongs) under ``non_field_errors``: here they are ``detail``, as any message about the
    whole request. Every field's errors are then a list of messages (see ``_field_errors``)."""
    data = {name: _field_errors(messages) for name, messages in errors.items()}
    whole = data.pop(NON_FIELD_ERRORS, None)
    if whole is not None:
        # A null body fails as a null field would ("This field may not be null."): say what it is.
        data["detail"] = " ".join("Invalid data. Expected a dictionary, but got null." if getattr(message, "code", None) == "null" else str(message)
                                  for message in whole)
    return data


def _field_errors(messages: Any) -> Any:
    """A field's errors as a list of messages, where DRF nests them: a nested object's whole
    value fails as ``{"non_field_errors": [...]}``, a list field's items as ``{0: [...]}``
    (here "Item 1: ..."). A nested object's own fields keep their names, each with its list."""
    if not isinstance(messages, Mapping):
        return messages
    if set(messages) == {NON_FIELD_ERRORS}:
        return messages[NON_FIELD_ERRORS]
    if messages and all(isinstance(index, int) and isinstance(item, list) for index, item in messages.items()):
        return [f"Item {index + 1}: {message}" for index, item in sorted(messages.items()) for message in item]
    return {name: _field_errors(value) for name, value in messages.items()}


# The answers every operation may give besides its own, documented once (drf-spectacular
# postprocessing hook): each is the JSON object the exception handler above writes.
ERROR_RESPONSES = {
    "400": "Invalid input: `detail`, or each field's name with a list of messages (a bulk upsert: `errors` by row and column). "
           "A body's unknown or read-only field, and a list's unknown query parameter, is such a 400 under its name.",
    "401": "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`).",
    "403": "The key's role may not do this; `detail` names the role it needs.",
    "404": "Not found: a missing id, and an id of another shop, answer alike.",
    "406": "The `Accept` header admits no type the API answers (it answers application/json).",
    "429": "The shop's request budget is spent; retry after `Retry-After` seconds.",
}
# ...and those of an operation that takes a body.
BODY_ERROR_RESPONSES = {
    "413": "The body (apart from an uploaded file) is larger than {limit} MB.",
    "415": "The body's `Content-Type` is not one the operation takes (those of its request body).",
}
# ...and those of a write that takes none: a body sent anyway is read, so a type the API cannot read is refused.
BODILESS_WRITE_ERROR_RESPONSES = {"415": "A body was sent with a `Content-Type` the API does not read; this operation takes no body, so leave it out."}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "requests the shop's budget allows per window (on every answer)",
    "RateLimit-Remaining": "requests left in the window (on every answer)",
    "RateLimit-Reset": "seconds until the window has room again (on every answer)",
}


def body_limit_mb() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024))


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {"type": "object", "properties": {"detail": {"type": "string"}}, "additionalProperties": True,
                        "description": "Every error body is a JSON object; `detail` carries a message about the whole request."}
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            responses = operation.setdefault("responses", {})
            body_errors = BODY_ERROR_RESPONSES if "requestBody" in operation else {} if method == "get" else BODILESS_WRITE_ERROR_RESPONSES
            for code, description in sorted({**ERROR_RESPONSES, **body_errors}.items()):
                responses.setdefault(code, {"description": description.format(limit=body_limit_mb()),
                                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
            responses["429"].setdefault("headers", {}).update(
                {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before the next request"},
                 **{name: {"schema": {"type": "integer"}, "description": text} for name, text in RATE_LIMIT_HEADERS.items()}})
            for code in ("201", "202"):  # every create and every accepted job says where it is (clmsite.api.created_at)
                if code in responses:
                    responses[code].setdefault("headers", {}).setdefault("Location", {
                        "schema": {"type": "string", "format": "uri"}, "description": "the URL of what was created (a job's, to poll)"})
    return result


# Answers whose keys depend on the case (a report before and after launch, an import's kind, a
# refused request): their optional fields stay optional.
CONDITIONAL_ANSWERS = {"CampaignReport", "ImportSummary", "BulkImportResult", "Error", "SavedFilters"}  # a segment's filters: those it sets
# Fields an answer has for some roles only: admins' and owners' campaigns carry the webhook secret.
ROLE_DEPENDENT_FIELDS = {"CampaignWithSecret": {"webhook_secret"}}


def require_answered_fields(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Mark every field of an answer-only component required (``null`` where it may be null):
    DRF writes every field of a serializer, but drf-spectacular, with one component for both
    directions, marks a field required only where a request must send it, and code generators
    made ``email`` or a page's ``next`` optional. A component some request body uses keeps its
    marks; so do the answers whose keys depend on the case (CONDITIONAL_ANSWERS)."""
    schemas = result.get("components", {}).get("schemas", {})

    def refs(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set().union(*(refs(v) for v in node.values()), {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set())
        return set().union(*(refs(v) for v in node)) if isinstance(node, list) else set()

    sent = set().union(*(refs(op.get("requestBody", {})) for ops in result.get("paths", {}).values() for op in ops.values()))
    while grown := set().union(*(refs(schemas.get(name, {})) for name in sent)) - sent:  # and what those refer to
        sent |= grown
    for name, component in schemas.items():
        if name in sent or name in CONDITIONAL_ANSWERS or component.get("type") != "object":
            continue
        answered = [key for key, field in component.get("properties", {}).items() if not field.get("writeOnly") and key not in ROLE_DEPENDENT_FIELDS.get(name, ())]
        if answered:
            component["required"] = sorted(set(component.get("required", [])) | set(answered), key=answered.index)
    return result


class Utf8ApiMiddleware:
    """The API reads the query, forms and JSON as UTF-8 whatever charset the Content-Type
    declares: ``application/json; charset=utf-16`` made Django decode the query string as
    UTF-16 too (``?dry_run=true`` became an unknown parameter in CJK), and JSON between
    systems is UTF-8 (RFC 8259), so a body in another encoding is refused by the parser."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if request.path.startswith("/api/") and request.encoding:  # a declared charset; without one Django reads UTF-8 already
            request.encoding = "utf-8"
        return self.get_response(request)


class ShopSerializer(serializers.Serializer):
    slug = serializers.CharField(help_text="the shop's short name, as `create_api_key --tenant` takes it")
    name = serializers.CharField()
    currency = serializers.CharField(help_text="ISO 4217: the currency of every money figure the API answers (an order carries its own `currency`)")
    horizon_days = serializers.IntegerField(help_text="how far ahead predictions look: the chance to buy within this many days")
    time_zone = serializers.CharField(help_text="the IANA time zone the shop's pages show times in (`Europe/Berlin`) and whose days the models count (`as_of`, a stage's `since`); the API's date-times are UTC whatever it is")
    role = serializers.ChoiceField(choices=Role.choices, help_text="the role of the key (or the signed-in user) asking")
    latest_scoring = serializers.DateField(allow_null=True, help_text="the date the current predictions, stages and next actions are as of; null before the first scoring")


class ShopViewSet(TenantViewSet):
    """The shop the API key belongs to: what its other answers are in (the currency, the
    prediction horizon) and the key's own role."""

    @extend_schema(responses=ShopSerializer)
    def retrieve(self, request: Any) -> Response:
        from modeling.insights import latest_scoring_date

        refuse_unknown_query_params(request)
        shop = self.tenant
        return Response(ShopSerializer({"slug": shop.slug, "name": shop.name, "currency": shop.currency, "horizon_days": shop.horizon_days,
                                        "time_zone": shop.time_zone, "role": request_role(request), "latest_scoring": latest_scoring_date(shop)}).data)

