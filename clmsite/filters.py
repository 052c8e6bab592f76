"""The base of every API filter (kept apart from clmsite.api, which DRF's settings import)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.utils.dateparse import parse_date
from django_filters.fields import IsoDateTimeField
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS
from django_filters.rest_framework import DjangoFilterBackend

from clmsite.lookups import nfc
from clmsite.tenancy import current_tenant, shop_zone


class UTCDateTimeField(IsoDateTimeField):
    """ISO 8601 date-times converted to UTC: PostgreSQL refuses offsets beyond ±15:59 that
    Python accepts (fuzzing sent +20:27), and UTC is what the database stores anyway. A date
    alone is the start of the shop's day (days are the shop's, as an ``as_of`` is); a time
    without an offset stays UTC, as a sync's cursor is read back."""

    default_error_messages = {"invalid": "Enter a date or date-time in ISO 8601, such as 2024-05-01 or 2024-05-01T09:30:00Z."}

    def to_python(self, value: Any) -> Any:
        try:
            return self._to_utc(value)
        except ValueError:  # well formed, not on the calendar (2023-02-29, 2026-11-31, month 13): Django's parsers raise
            given = str(value).strip()[:40].replace("%", "%%")
            raise DjangoValidationError(f"'{given}' is not a date on the calendar.", code="invalid") from None

    def _to_utc(self, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            # A sync's cursor left empty (?updated_at__gte=) filtered nothing and answered every row.
            raise DjangoValidationError("Empty: give a date or date-time, or leave the parameter out.", code="invalid")
        day_alone = isinstance(value, str) and parse_date(value.strip()) is not None
        try:
            value = super().to_python(value)
        except DjangoValidationError:
            if isinstance(value, str) and re.fullmatch(r".*\d \d{2}(:?\d{2})?", value.strip()):
                # 2024-05-01T09:30:00+02:00 sent unencoded: a query's + reads as a space.
                # %% as django-filter formats the message with its params; the value's own % too.
                given = value.strip()[:40].replace("%", "%%")
                raise DjangoValidationError(f"'{given}' is not a date-time: a + in a URL's query reads as a space. Write it as %%2B "
                                            "(2024-05-01T09:30:00%%2B02:00), or give the time in UTC with Z.", code="invalid") from None
            raise
        if value is None or value.tzinfo is None:
            return value
        zone = shop_zone(current_tenant())
        if day_alone and zone is not None:
            value = value.replace(tzinfo=None).replace(tzinfo=zone)  # midnight on the shop's clock
        try:
            return value.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise DjangoValidationError("Date-time out of range.", code="invalid") from None


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class ProbabilityField(forms.FloatField):
    """A probability from 0 to 1, as the API writes them: 50 (thinking in percent) is a 400,
    not a filter that quietly matches nobody."""

    # %% because django-filter formats the message with the validator's params.
    default_error_messages = {"min_value": "A probability from 0 to 1 (0.5 is 50%%).", "max_value": "A probability from 0 to 1 (0.5 is 50%%)."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=0, max_value=1, **kwargs)


class ProbabilityFilter(django_filters.NumberFilter):
    field_class = ProbabilityField


def choice_without_case(value: Any, keys: Any) -> Any:
    """``value`` as the choice among ``keys`` it names without case (``HIGH`` is high), else as given."""
    if not isinstance(value, str):
        return value
    return {str(key).lower(): key for key in keys if key not in ("", None)}.get(value.lower(), value)


class ChoiceField(django_filters.fields.ChoiceField):
    """A choice read without case (``HIGH`` is high, as ``?status=`` reads a status), and a
    wrong one answered with the choices: "Select a valid choice" left the client to guess."""

    def to_python(self, value: Any) -> Any:
        return choice_without_case(super().to_python(value), (key for key, _ in self.choices))

    def validate(self, value: Any) -> None:
        try:
            super().validate(value)
        except DjangoValidationError:
            allowed = ", ".join(str(key) for key, _ in self.choices if key not in ("", None))
            # %% as django-filter formats the message with its params; the value's own % too.
            given = str(value)[:40].replace("%", "%%")
            raise DjangoValidationError(f"'{given}' is not one of the choices: {allowed}.", code="invalid_choice") from None


class ChoiceFilter(django_filters.ChoiceFilter):
    field_class = ChoiceField


class WholeNumberFilter(django_filters.NumberFilter):
    """A count (orders, a rating): ``1.5`` is a 400, where a NumberFilter compared it as 1 and
    ``?min_orders=1.5`` took in the one-order customers."""

    field_class = forms.IntegerField


class IdField(forms.IntegerField):
    """A whole number a bigint holds (a larger one would reach the database as an error)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=-(2**63), max_value=2**63 - 1, **kwargs)


class IdFilter(django_filters.NumberFilter):
    """A related object by its numeric id (``?customer=``): an id no object of the shop has
    (missing, deleted or another shop's) matches nothing, an empty list, as ``?customer_id=``
    does. django-filter's ModelChoiceFilter answered it 400 "Select a valid choice"."""

    field_class = IdField


ID_FILTER = {"filter_class": IdFilter, "extra": lambda field: {"label": f"the {field.verbose_name}'s numeric id (one the shop does not have matches nothing)"}}


PLAIN_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class ClmFilterSet(django_filters.FilterSet):
    """The base of every API filter: date-time lookups parse ISO 8601 and compare in UTC, a
    related object is named by its numeric id (``IdFilter``), and a field of choices reads them
    without case and names them when refused (``ChoiceFilter``)."""

    FILTER_DEFAULTS = {**FILTER_FOR_DBFIELD_DEFAULTS, models.DateTimeField: {"filter_class": UTCDateTimeFilter},
                       models.ForeignKey: ID_FILTER, models.OneToOneField: ID_FILTER}

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if data is not None and hasattr(data, "setlist") and any(not value.isascii() for _, values in data.lists() for value in values):
            data = data.copy()  # compared with text as imports store it: "José" typed either way finds it
            for name, values in list(data.lists()):
                data.setlist(name, [nfc(value) for value in values])
        super().__init__(data, *args, **kwargs)

    def is_valid(self) -> bool:
        """Valid, and no filter given empty: ``?external_id=`` with a blank variable answered every
        row (an arbitrary customer for a lookup by id), where an empty date-time was already a 400."""
        valid = super().is_valid()
        for name, field in self.form.fields.items():
            raw = str(self.data.get(name) or "").strip() if name in self.data else None
            if raw is None or name in self.form.errors:
                continue
            if not raw:
                self.form.add_error(name, "Empty: give a value, or leave the parameter out.")
                valid = False
            elif isinstance(field, forms.IntegerField | forms.DecimalField | forms.FloatField) and not PLAIN_NUMBER.fullmatch(raw):
                # Django's number fields also read "1e3" and other scripts' digits ("２"), which ?page= refuses.
                self.form.add_error(name, "Write a plain number in the digits 0-9, such as 100 or 99.50.")
                valid = False
        return valid

    @classmethod
    def filter_for_lookup(cls, field: Any, lookup_type: str) -> tuple[Any, dict[str, Any]]:
        filter_class, params = super().filter_for_lookup(field, lookup_type)
        return (ChoiceFilter if filter_class is django_filters.ChoiceFilter else filter_class), params


class ClmFilterBackend(DjangoFilterBackend):
    filterset_base = ClmFilterSet
