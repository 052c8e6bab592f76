"""The one import service behind the web upload, the CLI and the REST bulk endpoints.

An import runs in two phases so that a bad file changes nothing:

1. **Validate and stage, streaming.** Rows are read one at a time, checked column by
   column, and the clean values stream into a temporary staging table on the import's
   own connection (PostgreSQL ``COPY``; ``executemany`` on SQLite), so memory stays
   bounded and the database parses rows while Python checks the next ones. A temporary
   table is private to its connection: nothing anyone can see has changed yet. Every bad
   row is reported (row number, column, message) up to a cap, with the clean rows that
   repeat an id with other data, and any error stops the import here.
2. **Load, set-based, in one transaction.** Duplicates inside the file are checked in
   SQL, and ``INSERT … ON CONFLICT DO UPDATE … WHERE <changed>`` statements upsert
   customers, products, orders, lines and reviews. Rows that would not change are left
   out before the upsert, so importing the same file twice writes nothing. Customer
   aggregates are refreshed for the customers the file touched.

A dry run (``dry_run=True``, "Check only" in the UI) runs both phases and then rolls the
transaction back: it finds every error an import would, and its counts are what importing
would do.

Row numbers count the header as row 1, as a spreadsheet shows them. For JSON rows (the
API) row N is the N-th item.

``benchmarks/import_orders.py`` measures an orders import against a plain ``COPY``.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import json
import math
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import IO, Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from clmsite.datacache import bump_data_version
from clmsite.lookups import nfc
from clmsite.models import Tenant
from clmsite.statistics import refresh_statistics
from clmsite.tenancy import shop_zone
from customers.models import Order
from customers.services import parsing, shopify
from customers.services.parsing import FieldError, shorten

KINDS = ("customers", "products", "orders", "reviews")
ProgressCallback = Callable[[float, str], None]
# Python's csv refuses fields over this many characters; we say so per row instead of crashing.
MAX_FIELD_CHARS = 100_000
csv.field_size_limit(MAX_FIELD_CHARS)


@dataclass
class RowError:
    row: int
    column: str
    message: str


@dataclass
class ImportResult:
    kind: str
    ok: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    details: dict[str, int] = field(default_factory=dict)
    # Columns of the file (keys of the rows) that this kind has no use for, as the header names them.
    ignored_columns: list[str] = field(default_factory=list)
    # A customers file's extra columns, under the attribute names they were kept as.
    attribute_columns: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    message: str = ""
    # A check: every step of the import ran, its counts are what importing would do, and the
    # transaction was rolled back, so nothing was written.
    dry_run: bool = False
    # Orders: statuses that are neither a usual sale's nor one that is not a sale, each with
    # its number of orders in the file: they count as sales, and the message names them.
    unusual_statuses: dict[str, int] = field(default_factory=dict)
    # Customers: countries that name no country the app knows (kept as written), each with
    # its number of customers in the file: the message names them, as a typo stays unfound
    # by the country filters, which match codes and names.
    unknown_countries: dict[str, int] = field(default_factory=dict)
    # Orders: orders stored as cancelled, refunded, failed or voided that the file makes sales
    # again, each with its change ("refunded → paid"): the message names them.
    sales_again: dict[str, str] = field(default_factory=dict)
    # Orders: currencies other than the shop's, each with its number of orders in the file:
    # totals add amounts as they are, so the message says so (a EUR export into a USD shop).
    other_currencies: dict[str, int] = field(default_factory=dict)
    # JSON rows (the bulk API): each record's id as stored (customer_id, sku, order_id or
    # review_id) and its numeric id in the API, so a client need not look them up.
    ids: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecordExists(Exception):
    """A create (``import_rows(..., create_only=True)``) named a record the shop has: nothing
    was written. ``ids`` maps its id as stored to its numeric id."""

    def __init__(self, ids: dict[str, int]) -> None:
        super().__init__(f"exists already: {ids}")
        self.ids = ids


class ImportError_(Exception):  # noqa: N801 - the builtin ImportError means something else
    """The file cannot be imported; nothing was written."""

    def __init__(self, message: str, errors: list[RowError] | None = None, error_count: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.error_count = error_count if error_count is not None else len(self.errors)


# --- Column specifications -------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    parse: Callable[[str], Any]
    required: bool = False
    sql_type: str = "text"  # the staging column's type: text, id, ts, money, int


@dataclass(frozen=True)
class _Text:
    """The parser of a plain text column. Phase 1 applies it inline (strip, check the
    length), as most cells of a file are plain text and a call per cell adds up."""

    max_length: int

    def __call__(self, raw: str) -> str:
        return parsing.parse_text(raw, max_length=self.max_length)


@dataclass(frozen=True)
class Spec:
    kind: str
    key: str
    columns: tuple[Column, ...]
    # Columns computed from the parsed ones, appended to each staging row.
    computed: tuple[tuple[str, str], ...] = ()

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def staging_columns(self) -> list[tuple[str, str]]:
        return [("row_no", "int")] + [(c.name, c.sql_type) for c in self.columns] + list(self.computed)


ID = _Text(128)
_SEPARATORS = re.compile(r"[\s_-]+")


def column_name(raw: str) -> str:
    """The column a header cell (or a bulk row's key) names: read without case, with spaces
    and hyphens as underscores, as exports title their columns ("Customer ID", "customer-id"
    and "Order  Id" are customer_id and order_id). A customer's extra column is kept as the
    attribute of this name, so that re-importing either spelling updates the same one.
    The other usual spellings of a column are read as it (HEADER_ALIASES: "E-Mail" is email)."""
    name = _SEPARATORS.sub("_", raw.strip().lower())
    return HEADER_ALIASES.get(name, name)


# Headers that spell a column otherwise, as shops' exports do (a German one's "E-Mail"): kept as
# an attribute, the customer had no email, and a campaign's export no address.
HEADER_ALIASES = {"e_mail": "email", "email_address": "email", "e_mail_address": "email", "emailaddress": "email"}

ATTRIBUTE_MAX_LENGTH = 1000  # a customer's extra column (attribute) value
ATTRIBUTE_NAME_MAX_LENGTH = 100  # and its name (the column's)
ATTRIBUTES_MAX = 100  # extra columns a customers file may keep as attributes (one row with 20,000 made pages of 500 KB)


def attribute_name_problem(name: str) -> str | None:
    """What is wrong with an attribute's name (a file's extra column, a key the API sets), or None."""
    if len(name) > ATTRIBUTE_NAME_MAX_LENGTH:
        return f"the attribute name is {len(name):,} characters long; the limit is {ATTRIBUTE_NAME_MAX_LENGTH}"
    return None


def attribute_problem(name: str, value: str) -> str | None:
    """What is wrong with one customer attribute (an extra column, or a key the API sets),
    or None: the one rule the imports and the API share."""
    if problem := attribute_name_problem(name):
        return problem
    if "\x00" in name or "\x00" in value:
        return "contains a NUL byte"
    if len(value) > ATTRIBUTE_MAX_LENGTH:
        return parsing.too_long(value, ATTRIBUTE_MAX_LENGTH)
    return None


SPECS: dict[str, Spec] = {
    "customers": Spec(
        "customers",
        key="customer_id",
        columns=(
            Column("customer_id", ID, required=True, sql_type="id"),
            Column("email", parsing.parse_email),
            Column("name", _Text(200)),
            Column("country", parsing.parse_country),
            Column("created_at", parsing.parse_datetime, sql_type="ts"),
        ),
        computed=(("attributes", "json"),),
    ),
    "products": Spec(
        "products",
        key="sku",
        columns=(
            Column("sku", ID, required=True, sql_type="id"),
            Column("name", _Text(300)),
            Column("category", _Text(128)),
            Column("price", parsing.parse_money, sql_type="money"),
        ),
    ),
    "orders": Spec(
        "orders",
        key="order_id",
        columns=(
            Column("customer_id", ID, required=True, sql_type="id"),
            Column("order_id", ID, required=True, sql_type="id"),
            Column("ordered_at", parsing.parse_datetime, required=True, sql_type="ts"),
            Column("amount", parsing.parse_order_amount, required=True, sql_type="money"),
            Column("currency", parsing.parse_currency),
            Column("quantity", parsing.parse_positive_int, sql_type="int"),
            Column("sku", ID, sql_type="id"),
            Column("product_name", _Text(300)),
            Column("category", _Text(128)),
            Column("status", parsing.parse_status),
        ),
        computed=(("unit_price", "money"),),
    ),
    "reviews": Spec(
        "reviews",
        key="review_id",
        columns=(
            Column("customer_id", ID, required=True, sql_type="id"),
            Column("review_id", ID, required=True, sql_type="id"),
            Column("created_at", parsing.parse_datetime, required=True, sql_type="ts"),
            Column("text", _Text(20_000), required=True),
            Column("rating", parsing.parse_rating, sql_type="int"),
            Column("sku", ID, sql_type="id"),
            Column("product_name", _Text(300)),
        ),
    ),
}


# --- Phase 1: read, validate and stage ---------------------------------------------------


class _Collector:
    """Collects row errors up to the cap while counting all of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.errors: list[RowError] = []
        self.count = 0
        # Errors arrive in row order, so counting the bad rows needs only the last one seen
        # (a set of them would grow with a file full of bad rows).
        self.bad_rows = 0
        self._last_row: int | None = None

    def add(self, row: int, column: str, message: str) -> None:
        self.count += 1
        if row != self._last_row:
            self.bad_rows += 1
            self._last_row = row
        if len(self.errors) < self.cap:
            self.errors.append(RowError(row, column, message))

    def add_staged(self, errors: list[RowError], total: int) -> None:
        """Add errors found among the staged rows (repeated ids), the first of ``total``: those
        rows were clean, so each is a bad row of its own, and the list stays in row order."""
        self.count += total
        self.bad_rows += total
        self.errors = sorted(self.errors + errors, key=lambda error: error.row)[: self.cap]

    def fail(self, what: str) -> ImportError_:
        shown = f" (the first {len(self.errors)} are listed)" if self.count > len(self.errors) else ""
        errors = "1 error" if self.count == 1 else f"{self.count:,} errors"
        rows = "1 row" if self.bad_rows == 1 else f"{self.bad_rows:,} rows"
        return ImportError_(
            f"Nothing was imported: {errors} in {rows}{shown}. Fix {'it' if self.count == 1 else 'them'} and {'send' if what == 'rows' else 'upload'} the {what} again.",
            self.errors,
            self.count,
        )


# Parsed cells worth remembering: a timestamp repeats on every line of an order, and
# amounts, quantities, ratings and currencies take few values. The caches are bounded;
# errors are never cached, so every bad cell is still reported.
_CACHE_SIZE = 4096
# An amount already in the form staging stores (str of the parsed Decimal): no Decimal needed.
_PLAIN_MONEY = re.compile(r"(?:0|[1-9][0-9]{0,10})\.[0-9]{2}")


def _stager(column: Column, vendor: str, *, decimal_comma: bool = False, zone: Any = None) -> Callable[[str], Any]:
    """The function turning a non-blank raw cell into its staging value (or raising FieldError).
    ``decimal_comma``: the file writes money with a decimal comma (see ``validate_file``);
    ``zone``: the shop's time zone, which a date or time without an offset is read in."""
    parse = column.parse
    if isinstance(parse, _Text):
        return parse
    if column.sql_type == "ts":
        if zone is not None:
            parse = functools.partial(parse, zone=zone)
        if vendor == "sqlite":
            # SQLite keeps Django datetimes as naive UTC text; PostgreSQL takes ISO with offset.
            def stage(raw: str) -> Any:
                return parse(raw).replace(tzinfo=None).isoformat(" ")
        else:

            def stage(raw: str) -> Any:
                return parse(raw).isoformat()
    elif column.sql_type == "money":
        if decimal_comma:
            parse = functools.partial(parse, decimal_comma=True)

        def stage(raw: str) -> Any:
            text = raw.strip()
            return text if _PLAIN_MONEY.fullmatch(text) else str(parse(raw))
    else:
        stage = parse
    return functools.lru_cache(maxsize=_CACHE_SIZE)(stage)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _unit_price(amount: str, quantity: int | None) -> str:
    """A line's unit price to the cent, from its staged amount and quantity."""
    if quantity is None or quantity == 1:
        return amount
    return str((Decimal(amount) / quantity).quantize(parsing.CENT))


# Ids are staged in the collation of the columns they are matched with (customers.models.IdentifierField).
_PG_TYPES = {"text": "text", "id": 'text COLLATE "C"', "ts": "timestamptz", "money": "numeric(14,2)", "int": "integer", "json": "jsonb"}
_SQLITE_TYPES = {"text": "text", "id": "text", "ts": "text", "money": "numeric", "int": "integer", "json": "text"}
STAGING = "clm_import_staging"
NOT_REVENUE_SQL = ", ".join(f"'{status}'" for status in Order.NOT_REVENUE)  # constants of ours, not input
KNOWN_STATUSES_SQL = ", ".join(f"'{status}'" for status in (*Order.SALE_STATUSES, *Order.NOT_REVENUE))  # an import names any other
# The staging table and the tables phase 2 derives from it; all are dropped together.
BLOCKS = f"{STAGING}_blocks"  # drop_repeated_orders: the blocks of rows of orders not in one block
_STAGING_TABLES = (STAGING, f"{STAGING}_orders", f"{STAGING}_existing", f"{STAGING}_relined", BLOCKS)
_SQLITE_BATCH = 5000


class _Staging:
    """The temporary table that clean rows stream into while the file is being checked.

    It lives on the import's connection but outside the load transaction: no other
    connection can see a temporary table, and the job row can still be updated between
    batches (phase 1 must not hold that row's lock; see ``_load``). On PostgreSQL the rows
    go out through ``COPY`` as they are validated, so the server parses and stores them
    while Python checks the next ones. A ``COPY`` in progress occupies the connection, so
    :meth:`pause` ends it before anything else may run there; the next row starts another.
    """

    def __init__(self, spec: Spec, zone: Any = None) -> None:
        self.spec = spec
        # The shop's time zone: a date or time written without an offset is the shop's.
        self.zone = zone
        self.rows = 0
        # Order lines that repeat the line before them cell for cell: an export that doubled
        # rows adds them to the order's amount, which the result warns of.
        self.repeats = 0
        self._previous: list[Any] | None = None
        self._postgres = connection.vendor == "postgresql"
        self._names = ", ".join(name for name, _ in spec.staging_columns)
        self._copy_stack: ExitStack | None = None
        self._copy: Any = None
        self._batch: list[list[Any]] = []

    def __enter__(self) -> _Staging:
        types = _PG_TYPES if self._postgres else _SQLITE_TYPES
        ddl = ", ".join(f"{name} {types[kind]}" for name, kind in self.spec.staging_columns)
        self.cursor = connection.cursor()
        self._drop_tables()  # left over by an import that died on this connection
        self.cursor.execute(f"CREATE TEMPORARY TABLE {STAGING} ({ddl})")
        return self

    def write(self, values: list[Any]) -> None:
        self.rows += 1
        if self.spec.kind == "orders":
            cells = values[1:]  # all but row_no
            self.repeats += cells == self._previous
            self._previous = cells
        if not self._postgres:
            self._batch.append(values)
            if len(self._batch) >= _SQLITE_BATCH:
                self.pause()
            return
        if self._copy is None:
            self._copy_stack = ExitStack()
            self._copy = self._copy_stack.enter_context(self.cursor.copy(f"COPY {STAGING} ({self._names}) FROM STDIN"))
        self._copy.write_row(values)

    def pause(self) -> None:
        """Finish storing the rows written so far, so that the connection can run other queries."""
        if self._copy_stack is not None:
            stack, self._copy_stack, self._copy = self._copy_stack, None, None
            stack.close()
        if self._batch:
            placeholders = ", ".join("%s" for _ in self.spec.staging_columns)
            self.cursor.executemany(f"INSERT INTO {STAGING} ({self._names}) VALUES ({placeholders})", self._batch)  # internal table/column names only; every value is a bound parameter  # nosec B608
            self._batch = []

    def discard(self) -> None:
        """Forget every row staged so far (the file is about to be read again)."""
        self.pause()
        self.cursor.execute(f"DELETE FROM {STAGING}")  # internal table/column names only; every value is a bound parameter  # nosec B608
        self.rows, self.repeats, self._previous = 0, 0, None

    def _drop_tables(self) -> None:
        for table in _STAGING_TABLES:
            self.cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self._batch = []
        try:
            # A COPY left open by an error is ended, not aborted: aborting it would abort an
            # enclosing transaction too. The rows it stored are dropped with the table.
            self.pause()
            self._drop_tables()
        except Exception:
            if exc is None:
                raise
            # The connection failed along with the error that brought us here; that one is reported.
        finally:
            self.cursor.close()


def _validate_records(
    spec: Spec,
    header: list[str],
    records: Iterable[tuple[int, list[str]]],
    staging: _Staging,
    *,
    max_rows: int,
    progress: Callable[[], None] | None = None,
    refused: dict[int, dict[str, str]] | None = None,
    what: str = "file",
    decimal_comma: bool = False,
    lossy: bool = False,
) -> list[str]:
    """Check every record, stage the clean ones and return the header's names as the file
    writes them (stripped, in lower case; ``column_name`` gives the column each names).
    A file with bad rows is still read to its end and its clean rows staged, so that the
    report also names the rows that repeat an id with different data. ``refused`` holds
    cells already found bad (row → column → message): they are reported in their place.
    ``decimal_comma``: money is written 1.234,56 (see ``validate_file``). ``lossy``: the file
    is in an encoding of one alphabet (Windows-1252), whose save replaced other letters by "?"."""
    collector = _Collector(settings.IMPORT_MAX_REPORTED_ERRORS)
    written = [h.strip().lower() for h in header]
    names = [column_name(h) for h in written]
    if not any(names):
        raise ImportError_("The file has no header row. The first line must name the columns.", [RowError(1, "", "empty header")])
    seen: dict[str, int] = {}
    twice = []
    for index, name in enumerate(names):
        if name in seen and name:
            first = seen[name]
            # Spelt differently (Customer ID and customer_id), the two are named as the file writes them.
            spellings = f": '{parsing.shorten(header[first].strip())}' and '{parsing.shorten(header[index].strip())}'" if written[first] != written[index] else ""
            collector.add(1, name, f"column appears twice (positions {first + 1} and {index + 1}{spellings})")
            twice.append(name)
        seen[name] = index
    missing = [name for name in spec.required if name not in seen]
    misspelt = misspelt_columns(spec, names) if what == "file" else {}  # a bulk request's keys: in each row, by validate_rows
    for name in missing:
        spelt = next((other for other, near in misspelt.items() if near == name), None)
        collector.add(1, name, f"missing required column '{name}'" + (f" ('{parsing.shorten(spelt)}' looks like a misspelling of it)" if spelt else ""))
    looks_like = _looks_like(spec, set(seen))
    if missing:
        # The file of another kind, chosen by mistake (reviews uploaded as orders): say which.
        hint = f" This looks like a file of {looks_like[0]} (it has {', '.join(looks_like[1])}): import it as {looks_like[0]}." if looks_like else ""
        # Else name the misspelt columns, or the file's own: an export from a shop system names
        # them its own way ("Created at", "Total"), and the merchant renames them to these.
        has = "" if hint else f" {_misspelt_message(misspelt)}" if misspelt else (
            f" The file's columns are {_first_named([parsing.shorten(h.strip()) for h in header if h.strip()])}: rename those that hold them.")
        raise ImportError_(f"Nothing was imported: the header must contain {', '.join(spec.required)}.{hint}{has}", collector.errors, collector.count)
    if twice:
        raise ImportError_(f"Nothing was imported: the header names {', '.join(dict.fromkeys(twice))} twice; name each column once.", collector.errors, collector.count)
    known = {c.name for c in spec.columns}
    if misspelt:
        for name, near in misspelt.items():
            collector.add(1, parsing.shorten(name), f"is not a column of {spec.kind}: did you mean {near}?")
        raise ImportError_(f"Nothing was imported: {_misspelt_message(misspelt)}", collector.errors, collector.count)
    overlong = [(name, problem) for name in names if name not in known and (problem := attribute_name_problem(name))]
    if overlong and spec.kind == "customers":
        for name, problem in overlong:
            collector.add(1, parsing.shorten(name), problem)
        raise ImportError_("Nothing was imported: a column name is too long to keep as a customer attribute; shorten it or leave the column out.",
                           collector.errors, collector.count)
    attributes = [name for name in names if name not in known]
    if spec.kind == "customers" and len(attributes) > ATTRIBUTES_MAX:
        raise ImportError_(f"Nothing was imported: {len(attributes):,} columns besides the customer's own would become attributes; "
                           f"a customer keeps at most {ATTRIBUTES_MAX}. Leave out the columns you do not need.",
                           [*collector.errors, RowError(1, "", f"{len(attributes):,} attribute columns; at most {ATTRIBUTES_MAX}")], collector.count + 1)
    # A file of another kind chosen by mistake (orders imported as customers would make every
    # order column a customer attribute): it has all of that kind's required columns, and that
    # kind requires more than this one, so the header cannot be read as a file of this kind.
    if looks_like and len(SPECS[looks_like[0]].required) > len(spec.required):
        other, has = looks_like
        raise ImportError_(f"Nothing was imported: this looks like a file of {other} (it has {', '.join(has)}), "
                           f"not of {spec.kind}. Import it as {other}.", [RowError(1, "", f"a header of {other}")])

    vendor = connection.vendor
    json_separators = (", ", ": ") if vendor == "postgresql" else (",", ":")
    columns = []
    for column in spec.columns:
        max_length = column.parse.max_length if isinstance(column.parse, _Text) else 0  # 0: not plain text
        columns.append((column.name, seen.get(column.name), column.required, _stager(column, vendor, decimal_comma=decimal_comma, zone=staging.zone), max_length))
    # Where an order line's amount and quantity sit in its staged row (after row_no).
    staged_names = ["row_no"] + [c.name for c in spec.columns]
    amount_at = staged_names.index("amount") if spec.kind == "orders" else 0
    quantity_at = staged_names.index("quantity") if spec.kind == "orders" else 0
    extra = [(name, index) for name, index in seen.items() if name and name not in known]
    width = len(names)
    rows = 0
    for row_no, values in records:
        rows += 1
        if rows > max_rows:
            raise ImportError_(f"Nothing was imported: the file has more than {max_rows:,} rows, the limit per import. Split it into smaller files.")
        if progress is not None and rows % 5000 == 0:
            staging.pause()
            progress()
        if len(values) != width:
            if not any(v.strip() for v in values):
                rows -= 1  # blank line
                continue
            said = refused.get(row_no) if refused else None  # a Shopify export's row refused as a whole, in the export's own words
            for column, message in (said or {"": f"has {len(values)} field{'s' if len(values) != 1 else ''} but the header has {width}"}).items():
                collector.add(row_no, column, message)
            continue
        staged: list[Any] = [row_no]
        bad = False
        flagged = refused.get(row_no) if refused else None
        if flagged is not None and "" in flagged:  # a key without a name: in no column below
            collector.add(row_no, "", flagged[""])
            bad = True
        if flagged is not None and spec.kind != "customers":  # a misspelt key: in no column below either
            for name in (name for name in flagged if name and name not in known):
                collector.add(row_no, name, flagged[name])
                bad = True
        for name, index, required, stage, max_length in columns:
            raw = values[index] if index is not None else ""
            if flagged is not None and name in flagged:
                collector.add(row_no, name, flagged[name])
                bad = True
                continue
            if "\x00" in raw:
                collector.add(row_no, name, "contains a NUL byte")
                bad = True
                continue
            raw = nfc(raw)  # one spelling of "José", not two customers that look alike
            text = raw.strip()
            if not text:
                if required:
                    collector.add(row_no, name, "is required")
                    bad = True
                staged.append(None)
            elif lossy and max_length and "?" in text and LOST_LETTERS.search(text):
                collector.add(row_no, name, f"'{parsing.shorten(text)}' has '?' where letters were: the file was saved in an encoding without them "
                                            "(Excel's \"CSV (Comma delimited)\"), which replaced them for good; save it as \"CSV UTF-8\" and import it again")
                bad = True
            elif len(text) <= max_length:
                staged.append(text)  # plain text that fits: what _Text returns
            else:
                try:
                    staged.append(stage(raw))
                except FieldError as exc:
                    collector.add(row_no, name, str(exc))
                    bad = True
        if spec.kind == "customers":  # checked even when a cell is bad: one answer names every problem of the row
            attributes = {}
            for name, index in extra:
                text = values[index].strip()
                problem = flagged[name] if flagged is not None and name in flagged else attribute_problem(name, text)
                if problem:
                    collector.add(row_no, name, problem)
                    bad = True
                elif text:
                    attributes[name] = text
            # Compact on SQLite, where the merge with stored attributes (json_patch) writes
            # compact text: the same attributes then compare equal on the next import.
            staged.append(json.dumps(attributes, sort_keys=True, separators=json_separators) if extra else None)
        if bad:
            continue
        if spec.kind == "orders":
            staged.append(_unit_price(staged[amount_at], staged[quantity_at]))
        staging.write(staged)
    if collector.count:
        staging.pause()
        collector.add_staged(*file_duplicates(staging.cursor, spec))
        raise collector.fail(what)
    if rows == 0:
        raise ImportError_("Nothing was imported: the file has a header but no data rows.", [RowError(2, "", "no data rows")])
    staging.pause()
    return written


def _looks_like(spec: Spec, header: set[str]) -> tuple[str, list[str]] | None:
    """The other kind whose file a header (its column names) looks like, with the columns of
    that kind it has; or None.

    A kind that requires several columns and finds them all is the likely one (reviews
    uploaded as orders). A kind that requires only an id tells little by that alone (every
    orders file has customer_id): it counts when the header also has one of its optional
    columns and more of its columns than of this kind's (customers uploaded as orders)."""
    def has(kind_spec: Spec) -> list[str]:
        return [c.name for c in kind_spec.columns if c.name in header]

    candidates = []
    for other_spec in SPECS.values():
        if other_spec.kind == spec.kind or not set(other_spec.required) <= header:
            continue
        found = has(other_spec)
        if len(other_spec.required) > 1 or (len(found) > len(other_spec.required) and len(found) > len(has(spec))):
            candidates.append((len(other_spec.required), len(found), other_spec.kind, found))
    if not candidates:
        return None
    _, _, kind, found = max(candidates, key=lambda candidate: candidate[:2])  # the most specific, then the best matched
    return kind, found


def _csv_records(text: IO[str], delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    # strict: a quote opened and never closed is an error, not a cell that swallows the rest
    # of the file (and its rows) without a word.
    reader = csv.reader(_capped_lines(text), delimiter=delimiter, strict=True)
    record_no = 0  # the header is row 1
    try:
        for values in reader:
            record_no += 1
            if not "".join(values).strip():  # a blank line, or one of separators only (";;;;" under a spreadsheet's rows)
                continue
            yield record_no, values
    except csv.Error as exc:
        message = str(exc)
        if "field larger" in message:
            message = f"a field is longer than {MAX_FIELD_CHARS:,} characters"
        elif "line longer" in message:
            message = f"a line is longer than {MAX_LINE_CHARS:,} characters (a field may have {MAX_FIELD_CHARS:,})"
        elif "unexpected end of data" in message:
            message = "a quoted field starts in this row and its closing quote never comes, so every line after it would be one cell"
        elif "expected after" in message:
            message = "text follows a closing quote; quote the whole field and double any quote inside it (\"\")"
        raise ImportError_(
            f"Nothing was imported: row {record_no + 1} cannot be read as CSV ({message}).",
            [RowError(record_no + 1, "", message)],
        ) from None


# One line of a file: the csv module takes its input a line at a time, and a line of 200 MB (one
# field with no line break) was read whole before its field was refused (624 MB at peak).
MAX_LINE_CHARS = 10 * MAX_FIELD_CHARS


def _capped_lines(text: IO[str]) -> Iterator[str]:
    """The lines of ``text``, none read past MAX_LINE_CHARS: a longer one is a csv.Error."""
    while line := text.readline(MAX_LINE_CHARS + 1):
        if len(line) > MAX_LINE_CHARS:
            raise csv.Error("line longer than the limit")
        yield line


def _open_text(path: str, encoding: str) -> IO[str]:
    # newline="" lets csv handle CRLF and quoted line breaks itself.
    return open(path, encoding=encoding, newline="")  # noqa: SIM115


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode text" export
UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
MB = 2**20  # as the limits are set (settings.IMPORT_MAX_BYTES) and the README states them
# A "?" inside a word (Ma?gorzata, Nguy?n) or a word of "?" only (?? ??, a Japanese name): what
# a save in Windows-1252 makes of letters it lacks. Only looked for in such files.
LOST_LETTERS = re.compile(r"[^\W\d_]\?+[^\W\d_]|(?:^|\s)\?+(?:\s|$)")


EXCEL_SEPARATOR = re.compile(r"\ufeff?sep=([,;\t|])\r?\n?", re.IGNORECASE)


def _delimiter(first_line: str) -> str:
    """Comma, or the semicolon or tab of a header that has more of those: spreadsheets
    in locales with a decimal comma save CSV with semicolons (and their amounts with that
    comma: see ``validate_file``)."""
    counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ","))  # a tie, or none at all: the comma


def _looks_binary(head: bytes) -> bool:
    """A NUL in the header line, or mostly control bytes, means this is not a CSV export.
    (A stray NUL further down is reported against its row instead.)"""
    first_line = head.split(b"\n", 1)[0]
    control = sum(1 for byte in head if byte < 9 or 13 < byte < 32)
    return b"\x00" in first_line or control > len(head) * 0.1


def validate_file(spec: Spec, path: str, staging: _Staging, *, progress: ProgressCallback | None = None) -> tuple[list[str], shopify.Export | None]:
    """Check the file and stage its rows; returns the header's column names (a Shopify
    export's: those of the rows it was read as), and the Shopify export it was, or None."""
    size = os.path.getsize(path)
    limit = settings.IMPORT_MAX_BYTES
    if size > limit:
        raise ImportError_(f"Nothing was imported: the file is {size / MB:,.1f} MB; the limit is {limit / MB:,.0f} MB. Split it into smaller files.",
                           [RowError(1, "", "file too large")])
    if size == 0:
        raise ImportError_("Nothing was imported: the file is empty.", [RowError(1, "", "empty file")])
    with open(path, "rb") as raw:
        head = raw.read(4096)
    unicode_bom = "utf-32" if head.startswith(UTF32_BOMS) else "utf-16" if head.startswith(UTF16_BOMS) else None  # UTF-32's starts as UTF-16's
    if unicode_bom is None and _looks_binary(head):
        utf16_without_bom = head[1:200:2].count(0) > 40 or head[0:200:2].count(0) > 40  # every other byte NUL
        hint = " It looks like UTF-16 without its byte-order mark: save it as UTF-8 CSV." if utf16_without_bom else ""
        raise ImportError_(f"Nothing was imported: this is not a text CSV file (it contains binary data).{hint}", [RowError(1, "", "binary data")])
    # UTF-16 when it says so; else UTF-8 (with or without BOM) first, and a file that is not
    # valid UTF-8 is read as Windows-1252, the export encoding of older spreadsheets: it is
    # Latin-1 with printable characters (“ ” – €) where Latin-1 has control codes. Latin-1
    # takes the few files that use cp1252's five undefined bytes.
    for encoding in (unicode_bom,) if unicode_bom else ("utf-8-sig", "cp1252", "latin-1"):
        try:
            with _open_text(path, encoding) as text:
                first_line = text.readline(65_536)
                if excel_hint := EXCEL_SEPARATOR.fullmatch(first_line):  # Excel's "sep=;" line names the delimiter; the header follows it
                    delimiter = excel_hint[1]
                else:
                    delimiter = _delimiter(first_line)
                    text.seek(0)
                reader = _csv_records(text, delimiter)
                try:
                    _, header = next(reader)
                except StopIteration:
                    raise ImportError_("Nothing was imported: the file is empty.", [RowError(1, "", "empty file")]) from None

                def report() -> None:
                    if progress is not None:
                        position = text.buffer.tell() if hasattr(text, "buffer") else 0
                        progress(0.6 * min(position / size, 1.0), "Checking rows")

                # A file separated by semicolons comes from a spreadsheet whose decimal mark is a
                # comma, so its amounts are read 1.234,56 (19.99 is still 19.99). Tab-separated
                # files keep the dot: Excel's "Unicode text" writes them in every locale.
                decimal_comma = delimiter == ";"
                export = shopify.export_of(header, decimal_comma=decimal_comma)
                lossy = encoding in ("cp1252", "latin-1")  # an encoding of one alphabet
                if export is None:
                    return _validate_records(spec, header, reader, staging, max_rows=settings.IMPORT_MAX_ROWS,
                                             progress=report if progress is not None else None, decimal_comma=decimal_comma, lossy=lossy), None
                if export.kind != spec.kind:
                    raise ImportError_(f"Nothing was imported: this is a Shopify {export.kind} export, not a file of {spec.kind}. Import it as {export.kind}.",
                                       [RowError(1, "", f"a Shopify {export.kind} export")])
                try:
                    return _validate_records(spec, export.columns, export.records(reader), staging, max_rows=settings.IMPORT_MAX_ROWS,
                                             progress=report if progress is not None else None, refused=export.refused, decimal_comma=decimal_comma,
                                             lossy=lossy), export
                except ImportError_ as exc:
                    raise export.named(exc) from None
        except UnicodeDecodeError:
            staging.discard()
            if encoding == "utf-8-sig" and (other := _other_script(path)):
                # Read as Windows-1252, a file in an encoding of another script imports as garbage (山田 as ŽR“c); a
                # line of it may even be valid UTF-8 by chance, which is no mix of two encodings.
                language, codec, sample = other
                raise ImportError_(f"Nothing was imported: the file is not in UTF-8 but, it seems, in {codec}{f' ({language})' if language else ''}: "
                                   f"read as this app reads older files it would import garbled (“{sample}”). Save it as UTF-8 CSV (Excel: “CSV UTF-8”) "
                                   "and import it again.", [RowError(1, "", f"not UTF-8: {codec}")]) from None
            if encoding == "utf-8-sig" and (lines := _mixed_encodings(path)):
                utf8, other = lines
                raise ImportError_(f"Nothing was imported: the file mixes two text encodings. Line {utf8:,} is UTF-8 and line {other:,} is not "
                                   "(an older spreadsheet's encoding, such as Windows-1252), so one of them would import garbled. "
                                   "Save the whole file as UTF-8 CSV.", [RowError(other, "", "not UTF-8, unlike the file's other lines")]) from None
            continue
    raise ImportError_("Nothing was imported: the file's text encoding is not recognised; save it as UTF-8.")  # pragma: no cover


def _other_script(path: str) -> tuple[str, str, str] | None:
    """For a file that is not UTF-8: its language, encoding and a few words, when its bytes read
    best as letters of a script other than Latin (Japanese in Shift-JIS, Russian in
    Windows-1251), by charset-normalizer on its first 256 KB; None for Latin text, which
    Windows-1252 reads (a guess between Latin encodings is too unsure to act on)."""
    from charset_normalizer import from_bytes

    with open(path, "rb") as raw:
        best = from_bytes(raw.read(256 * 1024)).best()
    if best is None:
        return None
    text = str(best)
    letters = [char for char in text if char.isalpha() and not char.isascii()]
    foreign = [char for char in letters if not unicodedata.name(char, "LATIN").startswith("LATIN")]
    if len(foreign) < 3 or len(foreign) < len(letters) / 2:  # a Western file's µ or ª among its é and ü is not another script
        return None
    start = text.index(foreign[0])
    language = best.language if best.language and best.language != "Unknown" else ""
    return language, best.encoding, shorten(text[start:start + 40].split("\n")[0], 24)


# A multi-byte UTF-8 character: in a file read as Windows-1252 it would read as two or three
# characters ("Müller" as "MÃ¼ller"), which no merchant's data holds.
UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _mixed_encodings(path: str) -> tuple[int, int] | None:
    """For a file that is not valid UTF-8: the numbers of a line in UTF-8 and of the first line
    that is not, when it has both; None when no line holds a UTF-8 character."""
    utf8 = other = None
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, 1):
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                other = other or number
                if UTF8_MULTIBYTE.search(line):
                    utf8 = utf8 or number
            else:
                utf8 = utf8 or number
            if utf8 and other:
                return utf8, other
    return None


def misspelt_columns(spec: Spec, names: Iterable[str]) -> dict[str, str]:
    """Column names a letter or two away from one of the kind's own (staus, ammount, emial,
    cusomer_id), each with the column it must mean. Ignored, or kept as an attribute, its
    values would be lost without a word: an order sent with "staus": "refunded" was stored as
    a sale. Other columns are left alone: those that contain a column's name (email_2, names,
    category_id, reorder_id) and those that differ by a word (ordered_by, created_by)."""
    known = [c.name for c in spec.columns]
    misspelt = {}
    for name in dict.fromkeys(names):
        if not name or name in known or any(column in name for column in known):
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if near and abs(len(near[0]) - len(name)) <= 2 and _one_word_misspelt(name, near[0]):
            misspelt[name] = near[0]
    return misspelt


def _one_word_misspelt(name: str, column: str) -> bool:
    """Whether ``name`` has ``column``'s words with the ones that differ spelt nearly alike."""
    words, column_words = name.split("_"), column.split("_")
    return len(words) == len(column_words) and all(
        a == b or difflib.SequenceMatcher(None, a, b).ratio() >= 0.75 for a, b in zip(words, column_words, strict=True))


def _misspelt_message(misspelt: dict[str, str]) -> str:
    named = "; ".join(f"'{parsing.shorten(name)}' looks like a misspelling of {near}" for name, near in misspelt.items())
    return f"{named}. Rename {'it' if len(misspelt) == 1 else 'them'}, or leave {'it' if len(misspelt) == 1 else 'them'} out."


# What the API answers for a record but a bulk row cannot set, each with what to send instead:
# a record read from the API and sent back must not turn its figures into a customer's
# attributes, nor be stored without them unseen (an order's "external_id" was ignored).
KEPT_BY_API = "is kept by the API; leave it out"
SCORED = "is read from the review's text by a scoring; leave it out"
API_ANSWER_KEYS: dict[str, dict[str, str]] = {
    "customers": {
        "id": "is the API's own number for the customer; the shop's id goes in customer_id",
        "external_id": "is how the API answers the customer's id; send it as customer_id",
        "first_seen": "is how the API answers the first-seen date; send it as created_at (the answer's own created_at is when the row was loaded: leave that out)",
        "orders_url": "is a link the API answers; leave it out",
        "reviews_url": "is a link the API answers; leave it out",
        "orders": "is the customer's orders, as the API answers them; send orders to /api/v1/orders/bulk/",
        "reviews": "is the customer's reviews, as the API answers them; send reviews to /api/v1/reviews/bulk/",
        "order_count": "is computed from the customer's orders; leave it out",
        "total_spent": "is computed from the customer's orders; leave it out",
        "first_order_at": "is computed from the customer's orders; leave it out",
        "last_order_at": "is computed from the customer's orders; leave it out",
        "review_count": "is computed from the customer's reviews; leave it out",
        "updated_at": KEPT_BY_API,
    },
    "orders": {
        "id": "is the API's own number for the order; the shop's id goes in order_id",
        "external_id": "is how the API answers the order's id; send it as order_id",
        "customer": "is the API's own number for the customer; the shop's id goes in customer_id",
        "customer_external_id": "is how the API answers the customer's id; send it as customer_id",
        "items": "is the order's lines, as the API answers them; send each line as a row of its own, with the order's order_id",
        "lines": "a single create (POST /api/v1/orders/) takes lines; here send each line as a row of its own, with the order's order_id",
        "line_no": "is a line's place in its order, as the API answers it: the rows' order gives it; leave it out",
        "unit_price": "is computed from the line's amount and quantity; leave it out",
        "updated_at": KEPT_BY_API,
    },
    "reviews": {
        "id": "is the API's own number for the review; the shop's id goes in review_id",
        "external_id": "is how the API answers the review's id; send it as review_id",
        "customer": "is the API's own number for the customer; the shop's id goes in customer_id",
        "customer_external_id": "is how the API answers the customer's id; send it as customer_id",
        "sentiment": SCORED, "sentiment_score": SCORED, "aspect": SCORED,
        "updated_at": KEPT_BY_API,
    },
    "products": {
        "id": "is the API's own number for the product; the shop's id goes in sku",
        "created_at": "is when the API loaded the product; leave it out",
        "updated_at": KEPT_BY_API,
    },
}


def _spread_attributes(row: dict[str, Any], row_no: int, clashes: dict[int, str]) -> dict[str, Any]:
    """A customer row's ``attributes`` object (as the API answers a customer and its PATCH
    takes them) spread into the row, as a file's extra columns: ``{"attributes": {"tier":
    "gold"}}`` is ``{"tier": "gold"}``. A key that is also one of the customer's columns, or
    another key of the row, is refused (``clashes``) rather than one of the two dropped, and so
    is an ``attributes`` that is not an object (it would be kept as an attribute so named)."""
    key = next((str(name) for name in row if column_name(str(name)) == "attributes"), None)  # "Attributes" too, as a header reads
    nested = row.get(key) if key is not None else None
    if not isinstance(nested, dict):
        if nested not in (None, ""):
            clashes[row_no] = "attributes must be a JSON object of names and values, as the API answers a customer"
        return row
    known = {c.name for c in SPECS["customers"].columns}
    taken = {column_name(str(name)) for name in row if name != key}
    answered = next((str(inner) for inner in nested if column_name(str(inner)) in API_ANSWER_KEYS["customers"]), None)
    if answered is not None:
        clashes[row_no] = f"'{parsing.shorten(answered)}' in attributes {API_ANSWER_KEYS['customers'][column_name(answered)]}"
        return row
    clash = next((str(inner) for inner in nested if column_name(str(inner)) in known | taken), None)
    if clash is not None:
        where = "a column of the customer's own" if column_name(clash) in known else "also a key of the row"
        clashes[row_no] = f"'{parsing.shorten(clash)}' in attributes is {where}: send it once, beside attributes"
        return row
    return {**{name: value for name, value in row.items() if name != key}, **{str(name): value for name, value in nested.items()}}


# Distinct keys a bulk request's rows may use in all beyond the kind's own columns (a customer's
# attributes): each becomes a column of every row.
API_BULK_MAX_COLUMNS = 100


def validate_rows(spec: Spec, rows: list[dict[str, Any]], staging: _Staging) -> list[str]:
    """Validate JSON objects (the REST bulk endpoints) exactly as CSV rows are validated.
    A key a row leaves out is a blank cell of that row, so a missing required value is
    named with its row, as in a file."""
    if not isinstance(rows, list):
        raise ImportError_("Send a JSON list of objects, one per row.")
    not_objects = [index + 1 for index, row in enumerate(rows) if not isinstance(row, dict)]
    if not_objects:
        raise ImportError_("Nothing was imported: send a JSON list of objects, one per row.",
                           [RowError(row, "", "not a JSON object") for row in not_objects[: settings.IMPORT_MAX_REPORTED_ERRORS]], len(not_objects))
    if not rows:
        raise ImportError_("Nothing was imported: the list is empty; send one object per row.")
    if len(rows) > settings.API_BULK_MAX_ROWS:
        raise ImportError_(f"Nothing was imported: the request holds {len(rows):,} rows; the limit per request is {settings.API_BULK_MAX_ROWS:,}.")
    clashes: dict[int, str] = {}
    if spec.kind == "customers":
        rows = [_spread_attributes(row, index + 1, clashes) for index, row in enumerate(rows)]
    keys = dict.fromkeys(spec.required)
    for row in rows:
        keys.update(dict.fromkeys(str(key) for key in row))
        if len(keys) > API_BULK_MAX_COLUMNS + len(spec.columns):  # the kind's own columns and 100 more, as a customer may keep 100 attributes
            raise ImportError_(f"Nothing was imported: the rows use more than {API_BULK_MAX_COLUMNS} different keys besides the {spec.kind} columns; "
                               "send the same columns in every row (a customer's extra keys are its attributes).")
    # A key names its column as a CSV header does (column_name); a row with two keys for one
    # column (Customer ID and customer_id) has that cell refused, reported with the other errors.
    column_of = {key: column_name(key) for key in keys}
    header = list(dict.fromkeys(column_of.values()))
    written: dict[str, str] = {}  # each column as its first key writes it, for the report of unused keys
    for key, column in column_of.items():
        written.setdefault(column, key.strip().lower())
    refused: dict[int, dict[str, str]] = {row_no: {"attributes": message} for row_no, message in clashes.items()}
    if any(key != column for key, column in column_of.items()):
        rows = [_by_column(row, column_of, index + 1, refused) for index, row in enumerate(rows)]
    # A key one letter or two from a column is a misspelling, refused in each row that gives it a
    # value (a file's header is refused whole, in validate_records).
    misspelt = misspelt_columns(spec, header)

    # A named column takes a string or a number, an attribute also true/false; JSON objects and
    # lists (and booleans in a named column) are refused rather than stored as their text, each
    # reported with the other errors of the request.
    known = {c.name for c in spec.columns}
    not_scalar = {bool: "true/false", dict: "a JSON object", list: "a JSON list"}
    for index, row in enumerate(rows):
        for name, value in row.items():
            if name in misspelt and value not in (None, ""):
                refused.setdefault(index + 1, {}).setdefault(name, f"is not a column of {spec.kind}: did you mean {misspelt[name]}?")
            elif name in API_ANSWER_KEYS[spec.kind] and value not in (None, ""):
                refused.setdefault(index + 1, {}).setdefault(name, API_ANSWER_KEYS[spec.kind][name])
            elif name in known and type(value) in not_scalar:
                refused.setdefault(index + 1, {}).setdefault(name, f"must be a string or a number, not {not_scalar[type(value)]}")
            elif isinstance(value, float) and not math.isfinite(value):  # 1e400 in the JSON reads as infinity
                refused.setdefault(index + 1, {}).setdefault(name, "is a number too large to read")
            elif not name and value not in (None, ""):  # a value with nowhere to go (the API's PATCH says the same)
                refused.setdefault(index + 1, {}).setdefault(name, "an attribute needs a name" if spec.kind == "customers" else "a key needs a name")
            elif name not in known and isinstance(value, dict | list):  # a customer's attribute, as the API's PATCH checks it; elsewhere never ignored unseen
                what = not_scalar[type(value)]
                refused.setdefault(index + 1, {}).setdefault(name, (
                    f"an attribute must be text, a number or true/false, not {what}" if spec.kind == "customers"
                    else "a single create (POST /api/v1/orders/) takes lines; here send each line as a row of its own, with the order's order_id"
                    if spec.kind == "orders" and name == "lines" else f"is not a column of {spec.kind}, and {what} is refused rather than ignored"))

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool | dict | list):
            return json.dumps(value)
        if isinstance(value, float) and math.isfinite(value):
            # A JSON number as its plain decimal, as written (JSONNumber's text): 5000.0 is the id
            # 5000 (as the integer 5000 is), 1e-05 is 0.00001 (refused as finer than a cent, not as
            # "scientific notation" it was not sent in), 1.00000000000000000001 is not 1.
            number = Decimal(getattr(value, "text", repr(value)))
            return str(int(number)) if number == number.to_integral_value() else format(number.normalize(), "f")
        return str(value)

    records = ((index + 1, [cell(row.get(name)) for name in header]) for index, row in enumerate(rows))
    return _validate_records(spec, [written[name] for name in header], records, staging, max_rows=settings.API_BULK_MAX_ROWS, refused=refused, what="rows")


def _by_column(row: dict[str, Any], column_of: dict[str, str], row_no: int, refused: dict[int, dict[str, str]]) -> dict[str, Any]:
    """A JSON row keyed by its column names; two keys of one column refuse that cell."""
    values: dict[str, Any] = {}
    first_key: dict[str, str] = {}
    for key, value in row.items():
        column = column_of[str(key)]
        if column in first_key:
            refused.setdefault(row_no, {})[column] = f"keys '{parsing.shorten(first_key[column])}' and '{parsing.shorten(str(key))}' name the same column; send one of them"
        first_key.setdefault(column, str(key))
        values[column] = value
    return values


# --- Phase 2: load -----------------------------------------------------------------------

# The tables each kind of import writes, the one holding the kind's own rows first.
_TABLES = {
    "customers": ("customers_customer",),
    "products": ("customers_product",),
    "orders": ("customers_order", "customers_orderitem", "customers_customer", "customers_product"),
    "reviews": ("customers_review", "customers_customer", "customers_product"),
}
# Every line of an order must agree on these; the order takes them from its lines.
ORDER_FIELDS = ("customer_id", "ordered_at", "currency", "status")
# After an import that wrote this many rows, statistics are refreshed at once (clmsite.statistics.refresh_statistics).
ANALYZE_AFTER_ROWS = 10_000


def _plan_joins(cursor: Any, spec: Spec, tenant_id: int, rows: int) -> None:
    """Have PostgreSQL join with hashes, not nested loops, when the file is big next to the tenant.

    The planner sizes joins from table statistics, which cannot count the rows this
    transaction has just written. To it, the first big import of a tenant joins against an
    empty tenant, and the nested loops it then picks run in time quadratic in the file (a
    first import of 100,000 order lines was cancelled after 14 minutes; with hash joins it
    takes about 10 s). A hash join costs one pass over the tenant's rows, cheap while those
    are at most ten times the file. A small file into a big tenant keeps the planner's own choice
    (index lookups), as statistics describe that tenant well. SET LOCAL ends with the
    transaction.
    """
    limit = 10 * rows
    cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {_TABLES[spec.kind][0]} WHERE tenant_id = %s LIMIT %s) t", [tenant_id, limit])  # internal table/column names only; every value is a bound parameter  # nosec B608
    if cursor.fetchone()[0] < limit:
        cursor.execute("SET LOCAL enable_nestloop = off")


def _money_sum(expression: str) -> str:
    """The SQL sum of a money expression, exact to the cent. SQLite keeps decimals as floats,
    whose sums drift (0.10 + 0.20 is 0.30000000000000004, which a filter on 0.30 misses), so
    there the sum is rounded to the cent; PostgreSQL sums numeric exactly, as it is."""
    return f"sum({expression})" if connection.vendor == "postgresql" else f"round(sum({expression}), 2)"


def _summarise_orders(cursor: Any) -> None:
    """One row per order id of the file: its first line, totals and whether its lines disagree.

    The duplicate check, the order upsert, the new customers and the removal of surplus
    lines all read this table instead of grouping the staging table again each time.
    """
    disagree = " OR ".join(f"min({name}) <> max({name}) OR count({name}) NOT IN (0, count(*))" for name in ORDER_FIELDS)
    fields = ", ".join(f"min({name}) AS {name}" for name in ORDER_FIELDS)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING}_orders AS SELECT order_id, min(row_no) AS first_row, count(*) AS lines, "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"{_money_sum('amount')} AS amount, {fields}, COALESCE({disagree}, false) AS disagree FROM {STAGING} GROUP BY order_id"
    )
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {STAGING}_orders")


def drop_repeated_orders(cursor: Any) -> tuple[int, int]:
    """An order whose lines come again further down the file, the same lines in the same order
    (two overlapping exports pasted together), is read once: its later copies leave the staged
    rows. Lines of one order apart from each other but not a copy (a file sorted by product)
    stay lines of that order. Returns the orders read once and the rows left out.

    Set-based: only orders whose rows are not one block are compared, block by block, with
    the first (``row_no`` less the row's rank in its order is constant within a block)."""
    same = _same_order_line("a", "b")
    blocks = (f"SELECT row_no, order_id, DENSE_RANK() OVER (PARTITION BY order_id ORDER BY grp) AS block, "  # internal table/column names only  # nosec B608
              f"ROW_NUMBER() OVER (PARTITION BY order_id, grp ORDER BY row_no) AS pos, COUNT(*) OVER (PARTITION BY order_id, grp) AS size "
              f"FROM (SELECT s.row_no, s.order_id, s.row_no - ROW_NUMBER() OVER (PARTITION BY s.order_id ORDER BY s.row_no) AS grp FROM {STAGING} s "
              f"WHERE s.order_id IN (SELECT order_id FROM {STAGING} GROUP BY order_id HAVING max(row_no) - min(row_no) + 1 > count(*))) r")
    cursor.execute(f"CREATE TEMPORARY TABLE {BLOCKS} AS {blocks}")  # nosec B608
    cursor.execute(
        f"SELECT l.order_id FROM {BLOCKS} l JOIN {STAGING} a ON a.row_no = l.row_no "  # nosec B608
        f"LEFT JOIN {BLOCKS} f ON f.order_id = l.order_id AND f.block = 1 AND f.pos = l.pos LEFT JOIN {STAGING} b ON b.row_no = f.row_no "
        f"WHERE l.block > 1 GROUP BY l.order_id HAVING SUM(CASE WHEN f.row_no IS NOT NULL AND f.size = l.size AND {same} THEN 0 ELSE 1 END) = 0"
    )
    copied = [row[0] for row in cursor.fetchall()]
    left_out = 0
    for start in range(0, len(copied), 10_000):
        chunk = copied[start:start + 10_000]
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(f"DELETE FROM {STAGING} WHERE row_no IN (SELECT row_no FROM {BLOCKS} WHERE block > 1 AND order_id IN ({marks}))", chunk)  # nosec B608
        left_out += cursor.rowcount
    cursor.execute(f"DROP TABLE {BLOCKS}")
    return len(copied), left_out


def _same_order_line(a: str, b: str) -> str:
    """SQL: staged order lines ``a`` and ``b`` (table aliases) are the same cell for cell."""
    return " AND ".join(f"{a}.{name} IS NOT DISTINCT FROM {b}.{name}" for name, _ in SPECS["orders"].staging_columns if name != "row_no")


def _adjacent_repeats(cursor: Any) -> int:
    """The staged order lines that repeat the staged line before them cell for cell (as
    ``_Staging.write`` counts them while the file streams), once copies of orders are left out."""
    same = _same_order_line("a", "b")
    cursor.execute(f"SELECT count(*) FROM (SELECT row_no, LAG(row_no) OVER (ORDER BY row_no) AS before FROM {STAGING}) p "  # nosec B608
                   f"JOIN {STAGING} a ON a.row_no = p.row_no JOIN {STAGING} b ON b.row_no = p.before WHERE {same}")
    return int(cursor.fetchone()[0])


def file_duplicates(cursor: Any, spec: Spec) -> tuple[list[RowError], int]:
    """Index and summarise the staged rows, then find those that repeat an id with other data:
    the first of them (up to the report's cap) and how many there are."""
    cursor.execute(f"CREATE INDEX {STAGING}_key ON {STAGING} ({spec.key})")
    _analyze(cursor, STAGING)
    if spec.kind == "orders":
        _summarise_orders(cursor)
        errors, total = _duplicate_errors(cursor, spec)
        too_large, over = _order_totals_too_large(cursor)
        return errors + too_large, total + over  # the collector puts them in row order
    return _duplicate_errors(cursor, spec)


def _order_totals_too_large(cursor: Any) -> tuple[list[RowError], int]:
    """Orders whose lines add up to more than an amount may be (each line is checked on its
    own as it is read): the first line of each, up to the report's cap, and how many."""
    cursor.execute(
        f"SELECT first_row, order_id, lines, amount, count(*) OVER () FROM {STAGING}_orders WHERE amount >= %s ORDER BY first_row LIMIT %s",  # internal table/column names only; every value is a bound parameter  # nosec B608
        [float(parsing.MAX_MONEY), settings.IMPORT_MAX_REPORTED_ERRORS],
    )
    rows = cursor.fetchall()
    errors = [RowError(first_row, "amount", f"order_id {shorten(str(order_id))}: its {lines:,} lines add up to {Decimal(str(amount)):,.2f}, "
                                            f"more than an order may total (under {parsing.MAX_MONEY:,.0f})")
              for first_row, order_id, lines, amount, _ in rows]
    return errors, rows[0][-1] if rows else 0


def _duplicate_errors(cursor: Any, spec: Spec) -> tuple[list[RowError], int]:
    """Rows that repeat a key of an earlier row with different data (order lines may
    repeat an order id, but must agree on its customer, time, currency and status)."""
    key = spec.key
    if spec.kind == "orders":
        compare = list(ORDER_FIELDS)
        # Only orders whose lines disagree somewhere can have such rows.
        first = f"(SELECT first_row AS row_no, order_id AS k FROM {STAGING}_orders WHERE disagree)"  # internal table/column names only; every value is a bound parameter  # nosec B608
    else:
        # A customer's extra columns (its attributes) must agree too.
        compare = [c.name for c in spec.columns if c.name != spec.key] + [name for name, _ in spec.computed if name == "attributes"]
        first = f"(SELECT min(row_no) AS row_no, {key} AS k FROM {STAGING} GROUP BY {key} HAVING count(*) > 1)"  # internal table/column names only; every value is a bound parameter  # nosec B608
    checks = " OR ".join(f"s.{name} IS DISTINCT FROM f.{name}" for name in compare)
    values = ", ".join(f"s.{n}, f.{n}" for n in compare)
    cursor.execute(
        f"SELECT s.row_no, f.row_no, s.{key}, {values}, count(*) OVER () "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"FROM {STAGING} s JOIN {first} d ON d.k = s.{key} JOIN {STAGING} f ON f.row_no = d.row_no "
        f"WHERE s.row_no > f.row_no AND ({checks}) ORDER BY s.row_no LIMIT %s",
        [settings.IMPORT_MAX_REPORTED_ERRORS],
    )
    rows = cursor.fetchall()
    errors, total = [], rows[0][-1] if rows else 0  # count(*) OVER (): all of them, past the LIMIT
    for row_no, first_row, key_value, *pairs in rows:
        here_there = dict(zip(compare, zip(pairs[0:-1:2], pairs[1:-1:2], strict=True), strict=True))
        column = next(name for name, (here, there) in here_there.items() if here != there)
        what = "order line" if spec.kind == "orders" else "row"
        if column == "attributes":
            different = "different extra columns (attributes)"
        else:
            here, there = (shorten(str(v)) if v not in (None, "") else "blank" for v in here_there[column])
            different = f"a different {column} ({here} here, {there} there)"
        errors.append(RowError(row_no, column, f"{key} {shorten(str(key_value))} repeats row {first_row}, and this {what} has {different}"))
    return errors, total


def _count_new(cursor: Any, table: str, key_column: str, tenant_id: int, spec: Spec) -> tuple[int, int]:
    cursor.execute(
        f"SELECT count(*), sum(CASE WHEN t.id IS NULL THEN 1 ELSE 0 END) FROM (SELECT DISTINCT {spec.key} AS k FROM {STAGING}) g "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"LEFT JOIN {table} t ON t.tenant_id = %s AND t.{key_column} = g.k",
        [tenant_id],
    )
    total, new = cursor.fetchone()
    return int(total or 0), int(new or 0)


# Columns holding JSON. PostgreSQL compares them as jsonb; SQLite keeps them as text, and
# Django writes it with spaces (after an API edit) where the import writes it compact.
_JSON_COLUMNS = frozenset(["attributes"])


def _as_value(column: str, expression: str) -> str:
    """``expression`` in a form that compares equal exactly when the values are equal: on
    SQLite, JSON text as json() minifies it (key order is kept, and the merge in
    _load_customers keeps the stored order)."""
    return f"json({expression})" if column in _JSON_COLUMNS and connection.vendor == "sqlite" else expression


def _upsert(
    cursor: Any,
    table: str,
    values: dict[str, str],
    source: str,
    conflict: list[str],
    update: list[str],
    params: dict[str, Any],
    *,
    where: str = "true",
    group_by: str = "",
    order_by: str = "",
) -> int:
    """INSERT … SELECT … ON CONFLICT DO UPDATE only where something differs; returns rows written.

    ``values`` maps each column to its SQL expression over ``source``. Rows whose key and
    update columns already hold these values are left out before the INSERT: ON CONFLICT
    would skip them as well, but only after locking each one, a write per row that made a
    re-import of a big file cost nearly as much as the first import. The check runs in a
    subquery, so expressions must name columns by their source alias (a bare name would
    mean the target's column there) and, with ``group_by``, the keys must be group keys.
    ``order_by`` inserts in index order, which keeps the indexes' pages warm.
    """
    columns = list(values)
    # The tenant condition keeps the check inside the tenant's rows even where the key does not
    # name the tenant (order lines): a hash anti-join would otherwise read every tenant's lines.
    same = ["existing.tenant_id = %(tenant)s"] + [f"existing.{c} = {values[c]}" for c in conflict if c != "tenant_id"]
    same += [f"{_as_value(c, f'existing.{c}')} IS NOT DISTINCT FROM {_as_value(c, values[c])}" for c in update]
    unchanged = f"EXISTS (SELECT 1 FROM {table} existing WHERE {' AND '.join(same)})"  # internal table/column names only; every value is a bound parameter  # nosec B608
    if update:
        sets = ", ".join(f"{c} = excluded.{c}" for c in update + ["updated_at"] if c in columns)
        changed = " OR ".join(f"{_as_value(c, f'{table}.{c}')} IS DISTINCT FROM {_as_value(c, f'excluded.{c}')}" for c in update)
        action = f"DO UPDATE SET {sets} WHERE {changed}"  # internal table/column names only; every value is a bound parameter  # nosec B608
    else:
        action = "DO NOTHING"
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values.values())} FROM {source} "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"WHERE ({where}) AND NOT {unchanged}"
        + (f" GROUP BY {group_by}" if group_by else "")
        + (f" ORDER BY {order_by}" if order_by else "")
        + f" ON CONFLICT ({', '.join(conflict)}) {action}",
        params,
    )
    return max(cursor.rowcount, 0)


def _emails_from_ids(cursor: Any, params: dict[str, Any]) -> None:
    """The customers this import created whose id is an email address (a shop that names its
    customers by email, as Shopify's export does) get it as their email, checked and in lower
    case as a customers file's email column is; other ids leave the email blank."""
    cursor.execute("SELECT id, external_id FROM customers_customer WHERE tenant_id = %(tenant)s AND created_at = %(now)s "
                   "AND email = '' AND external_id LIKE '%%@%%'", params)
    emails = []
    for pk, external_id in cursor.fetchall():
        with contextlib.suppress(FieldError):
            emails.append((parsing.parse_email(external_id), pk))
    if emails:
        cursor.executemany("UPDATE customers_customer SET email = %s WHERE id = %s", emails)


_NEW_CUSTOMER = {"email": "''", "name": "''", "country": "''", "attributes": "'{}'", "review_count": "0", "created_at": "%(now)s", "updated_at": "%(now)s"}


def _ensure_customers(cursor: Any, params: dict[str, Any], first_seen_column: str) -> int:
    """Create customers the file mentions but the tenant does not have yet."""
    return _upsert(
        cursor,
        "customers_customer",
        {
            "tenant_id": "%(tenant)s",
            "external_id": "s.customer_id",
            "first_seen": f"min(s.{first_seen_column})",
            "order_count": "0",
            "total_spent": "0",
            **_NEW_CUSTOMER,
        },
        f"{STAGING} s",
        ["tenant_id", "external_id"],
        [],
        params,
        group_by="s.customer_id",
        order_by="s.customer_id",
    )


_SALE = f"COALESCE(g.status, 'completed') NOT IN ({NOT_REVENUE_SQL})"


def _ensure_order_customers(cursor: Any, params: dict[str, Any]) -> int:
    """Create the customers an orders file mentions but the tenant does not have yet, with
    their order aggregates already filled in (sales only, as ``refresh_customer_aggregates``
    counts them): the refresh that follows the orders then has nothing to rewrite for them
    (on a first import, every customer of the file)."""
    return _upsert(
        cursor,
        "customers_customer",
        {
            "tenant_id": "%(tenant)s",
            "external_id": "g.customer_id",
            "first_seen": "min(g.ordered_at)",
            "order_count": f"count(CASE WHEN {_SALE} THEN 1 END)",
            "total_spent": f"COALESCE({_money_sum(f'CASE WHEN {_SALE} THEN g.amount END')}, 0)",
            "first_order_at": f"min(CASE WHEN {_SALE} THEN g.ordered_at END)",
            "last_order_at": f"max(CASE WHEN {_SALE} THEN g.ordered_at END)",
            **_NEW_CUSTOMER,
        },
        f"{STAGING}_orders g",
        ["tenant_id", "external_id"],
        [],
        params,
        group_by="g.customer_id",
        order_by="g.customer_id",
    )


def _ensure_products(cursor: Any, params: dict[str, Any], name_column: str, category_column: str | None) -> int:
    return _upsert(
        cursor,
        "customers_product",
        {
            "tenant_id": "%(tenant)s",
            "sku": "s.sku",
            "name": f"COALESCE(max(s.{name_column}), '')",
            "category": f"COALESCE(max(s.{category_column}), '')" if category_column else "''",
            "price": "NULL",
            "created_at": "%(now)s",
            "updated_at": "%(now)s",
        },
        f"{STAGING} s",
        ["tenant_id", "sku"],
        [],
        params,
        where="s.sku IS NOT NULL",
        group_by="s.sku",
        order_by="s.sku",
    )


def refresh_customer_aggregates(cursor: Any, tenant_id: int, customer_filter_sql: str, params: dict[str, Any]) -> None:
    """Recompute order and review aggregates for the customers selected by the filter; a
    customer is first seen no later than their earliest order (a sale or not) or review.

    Built in steps through small temporary tables that are analysed before use: in one
    statement, PostgreSQL cannot estimate how many customers the filter picks and can fall
    into a nested loop of every customer against every customer (minutes on 1M rows).
    The filter should be one ``IN (subquery)``, which becomes a join: an ``OR`` of two
    cannot, and each subquery then runs as a subplan that is re-scanned for every customer
    once its hash table would not fit in work_mem (20 minutes on a 1M-line orders file)."""
    params = {**params, "tenant": tenant_id}
    affected, orders, reviews = f"{STAGING}_affected", f"{STAGING}_agg_orders", f"{STAGING}_agg_reviews"
    sale = f"o.status NOT IN ({NOT_REVENUE_SQL})"
    for table in (affected, orders, reviews):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {affected} AS SELECT c.id AS id FROM customers_customer c WHERE c.tenant_id = %(tenant)s AND {customer_filter_sql}",  # internal table/column names only; every value is a bound parameter  # nosec B608
        params,
    )
    cursor.execute(f"CREATE INDEX {affected}_id ON {affected} (id)")
    _analyze(cursor, affected)
    cursor.execute(
        # Sales make the totals; every order, a sale or not, says when the customer was first seen.
        f"CREATE TEMPORARY TABLE {orders} AS SELECT o.customer_id AS id, count(CASE WHEN {sale} THEN 1 END) AS order_count, "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"{_money_sum(f'CASE WHEN {sale} THEN o.amount END')} AS total_spent, min(CASE WHEN {sale} THEN o.ordered_at END) AS first_order_at, "
        f"max(CASE WHEN {sale} THEN o.ordered_at END) AS last_order_at, min(o.ordered_at) AS first_seen_at "
        f"FROM customers_order o JOIN {affected} a ON a.id = o.customer_id GROUP BY o.customer_id"
    )
    cursor.execute(
        f"CREATE TEMPORARY TABLE {reviews} AS SELECT r.customer_id AS id, count(*) AS review_count, min(r.created_at) AS first_seen_at "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"FROM customers_review r JOIN {affected} a ON a.id = r.customer_id GROUP BY r.customer_id"
    )
    for table in (orders, reviews):
        cursor.execute(f"CREATE INDEX {table}_id ON {table} (id)")
        _analyze(cursor, table)
    # First seen moves back to an earlier order or review (history loaded after live data), never forward.
    earlier = "(agg.first_seen_at IS NOT NULL AND (customers_customer.first_seen IS NULL OR agg.first_seen_at < customers_customer.first_seen))"
    cursor.execute(
        f"""
        UPDATE customers_customer SET
            order_count = agg.order_count, total_spent = agg.total_spent,
            first_order_at = agg.first_order_at, last_order_at = agg.last_order_at,
            first_seen = CASE WHEN {earlier} THEN agg.first_seen_at ELSE customers_customer.first_seen END,
            review_count = agg.review_count, updated_at = %(now)s
        FROM (
            SELECT a.id AS id, COALESCE(o.order_count, 0) AS order_count, COALESCE(o.total_spent, 0) AS total_spent,
                o.first_order_at AS first_order_at, o.last_order_at AS last_order_at, COALESCE(r.review_count, 0) AS review_count,
                CASE WHEN r.first_seen_at IS NULL OR o.first_seen_at <= r.first_seen_at THEN o.first_seen_at ELSE r.first_seen_at END AS first_seen_at
            FROM {affected} a LEFT JOIN {orders} o ON o.id = a.id LEFT JOIN {reviews} r ON r.id = a.id
        ) agg
        WHERE customers_customer.id = agg.id AND (
            customers_customer.order_count IS DISTINCT FROM agg.order_count
            OR customers_customer.total_spent IS DISTINCT FROM agg.total_spent
            OR customers_customer.first_order_at IS DISTINCT FROM agg.first_order_at
            OR customers_customer.last_order_at IS DISTINCT FROM agg.last_order_at
            OR customers_customer.review_count IS DISTINCT FROM agg.review_count
            OR {earlier})
        """,  # internal table/column names only; every value is a bound parameter  # nosec B608
        params,
    )
    for table in (affected, orders, reviews):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")


def _analyze(cursor: Any, table: str) -> None:
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {table}")


def _keep_stored_for_blanks(cursor: Any, spec: Spec, table: str, key_column: str, mapping: dict[str, str], params: dict[str, Any], *, join: str = "") -> None:
    """Fill the staged rows' blank cells (NULL) with what the tenant has stored, ``mapping``
    giving each staging column's stored value as SQL over ``table t`` (and ``join``). A blank
    cell, or a column the file leaves out (blank in every row), means "not known here", not
    "erase", in every kind: a partial export must not wipe the first-seen date of a customer
    who has orders, nor a review's rating."""
    if not mapping:
        return
    sets = ", ".join(f"{source} = COALESCE(s.{source}, {stored})" for source, stored in mapping.items())
    blank = " OR ".join(f"s.{source} IS NULL" for source in mapping)
    cursor.execute(
        f"UPDATE {STAGING} AS s SET {sets} FROM {table} t {join} WHERE t.tenant_id = %(tenant)s AND t.{key_column} = s.{spec.key} AND ({blank})",  # internal table/column names only; every value is a bound parameter  # nosec B608
        params,
    )


def _keep_stored_lines(cursor: Any, params: dict[str, Any]) -> None:
    """An order line's blank or absent ``quantity`` and ``sku`` keep the stored line's, matched by
    the line's position in its order (as line_no is given). A kept quantity prices a changed
    amount (unit price = amount / quantity); an unchanged amount keeps its stored unit price.
    Skipped when every line has both (a full export), and only the stored orders' lines are numbered."""
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {STAGING} WHERE quantity IS NULL OR sku IS NULL)")  # internal table/column names only  # nosec B608
    if not cursor.fetchone()[0]:
        return
    cursor.execute(
        f"UPDATE {STAGING} AS s SET quantity = COALESCE(s.quantity, x.quantity), sku = COALESCE(s.sku, p.sku), "  # internal table/column names only; every value is a bound parameter  # nosec B608
        "unit_price = CASE WHEN s.quantity IS NOT NULL THEN s.unit_price WHEN x.amount = s.amount THEN x.unit_price ELSE round(s.amount / x.quantity, 2) END "
        f"FROM (SELECT l.row_no, e.id AS order_pk, row_number() OVER (PARTITION BY l.order_id ORDER BY l.row_no) AS line_no "
        f"      FROM {STAGING} l JOIN {STAGING}_existing e ON e.order_id = l.order_id) n "
        "JOIN customers_orderitem x ON x.tenant_id = %(tenant)s AND x.order_id = n.order_pk AND x.line_no = n.line_no "
        "LEFT JOIN customers_product p ON p.id = x.product_id "
        "WHERE n.row_no = s.row_no AND (s.quantity IS NULL OR s.sku IS NULL)",
        params,
    )


def _load_customers(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    total, new = _count_new(cursor, "customers_customer", "external_id", params["tenant"], spec)
    unknown: dict[str, int] = {}
    if "country" in present:  # the file's own countries, before a blank cell takes the stored one
        cursor.execute(f"SELECT country, count(DISTINCT customer_id) FROM {STAGING} WHERE country <> '' GROUP BY country "  # internal names only  # nosec B608
                       "ORDER BY count(DISTINCT customer_id) DESC, country")
        unknown = {country: count for country, count in cursor.fetchall() if not parsing.is_country_code(country)}
    # Only the columns the file has are updated: a file of emails does not blank out names.
    mapping = {"email": "email", "name": "name", "country": "country", "created_at": "first_seen", "attributes": "attributes"}
    update = [target for source, target in mapping.items() if source in present]
    cells = {source: f"t.{target}" for source, target in mapping.items() if source in present and source != "attributes"}
    _keep_stored_for_blanks(cursor, spec, "customers_customer", "external_id", cells, params)
    if "attributes" in present:
        # The file's attribute columns are merged into the stored ones: a key the file does
        # not have, or leaves blank, keeps its value.
        merged = "t.attributes || s.attributes" if connection.vendor == "postgresql" else "json_patch(t.attributes, s.attributes)"
        cursor.execute(
            f"UPDATE {STAGING} AS s SET attributes = {merged} FROM customers_customer t "  # internal table/column names only; every value is a bound parameter  # nosec B608
            "WHERE t.tenant_id = %(tenant)s AND t.external_id = s.customer_id AND s.attributes IS NOT NULL",
            params,
        )
    if "created_at" in present:
        # First seen is never after a stored order or review of the customer's (a sign-up date
        # after a guest order): the file's date moves back to it here, before the comparison,
        # so that importing the file again finds the row unchanged.
        cursor.execute(
            f"UPDATE {STAGING} AS s SET created_at = e.first_seen_at FROM ("  # internal table/column names only; every value is a bound parameter  # nosec B608
            "SELECT c.external_id AS customer_id, min(x.at) AS first_seen_at FROM customers_customer c JOIN ("
            "SELECT customer_id, ordered_at AS at FROM customers_order WHERE tenant_id = %(tenant)s "
            "UNION ALL SELECT customer_id, created_at FROM customers_review WHERE tenant_id = %(tenant)s) x ON x.customer_id = c.id "
            f"WHERE c.tenant_id = %(tenant)s AND c.external_id IN (SELECT customer_id FROM {STAGING}) GROUP BY c.external_id) e "
            "WHERE e.customer_id = s.customer_id AND e.first_seen_at < s.created_at",
            params,
        )
    written = _upsert(
        cursor,
        "customers_customer",
        {
            "tenant_id": "%(tenant)s",
            "external_id": "s.customer_id",
            "email": "COALESCE(s.email, '')",
            "name": "COALESCE(s.name, '')",
            "country": "COALESCE(s.country, '')",
            "first_seen": "s.created_at",
            "attributes": "COALESCE(s.attributes, '{}')",
            "order_count": "0",
            "total_spent": "0",
            "review_count": "0",
            "created_at": "%(now)s",
            "updated_at": "%(now)s",
        },
        f"{STAGING} s",
        ["tenant_id", "external_id"],
        update,
        params,
        where=f"s.row_no IN (SELECT min(row_no) FROM {STAGING} GROUP BY customer_id)",  # internal table/column names only; every value is a bound parameter  # nosec B608
        order_by="s.customer_id",
    )
    return ImportResult("customers", True, rows=total, created=new, updated=written - new, unchanged=total - written, unknown_countries=unknown)


def _load_products(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    total, new = _count_new(cursor, "customers_product", "sku", params["tenant"], spec)
    update = [c for c in ("name", "category", "price") if c in present]
    _keep_stored_for_blanks(cursor, spec, "customers_product", "sku", {c: f"t.{c}" for c in update}, params)
    written = _upsert(
        cursor,
        "customers_product",
        {
            "tenant_id": "%(tenant)s",
            "sku": "s.sku",
            "name": "COALESCE(s.name, '')",
            "category": "COALESCE(s.category, '')",
            "price": "s.price",
            "created_at": "%(now)s",
            "updated_at": "%(now)s",
        },
        f"{STAGING} s",
        ["tenant_id", "sku"],
        update,
        params,
        where=f"s.row_no IN (SELECT min(row_no) FROM {STAGING} GROUP BY sku)",  # internal table/column names only; every value is a bound parameter  # nosec B608
        order_by="s.sku",
    )
    return ImportResult("products", True, rows=total, created=new, updated=written - new, unchanged=total - written)


# The file's order lines as stored lines are numbered: 1, 2… in file order within each order.
_STAGED_LINES = (f"(SELECT order_id, row_number() OVER (PARTITION BY order_id ORDER BY row_no) AS line_no, sku, "  # internal table/column names only  # nosec B608
                 f"COALESCE(quantity, 1) AS quantity, unit_price, amount FROM {STAGING})")


def _find_relined_orders(cursor: Any, params: dict[str, Any]) -> None:
    """``{STAGING}_relined``: the ids of stored orders whose lines the file changes (a line
    that differs or is new, or a stored line beyond the file's), read before the lines are
    written. An order counts as updated, and its updated_at moves, when only its lines
    change: a re-import with the same total but other lines was "unchanged", and
    incremental sync never saw it. Only stored orders are compared, so a first import
    spends nothing here."""
    differs = " OR ".join(f"{_as_value(c, f'i.{c}')} IS DISTINCT FROM {_as_value(c, f'l.{c}')}" for c in ("quantity", "unit_price", "amount"))
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING}_relined AS "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"SELECT e.id FROM {STAGING}_existing e JOIN "
        f"{_STAGED_LINES} l ON l.order_id = e.order_id "
        f"LEFT JOIN customers_product p ON p.tenant_id = %(tenant)s AND p.sku = l.sku "
        f"LEFT JOIN customers_orderitem i ON i.tenant_id = %(tenant)s AND i.order_id = e.id AND i.line_no = l.line_no "
        f"WHERE i.id IS NULL OR i.product_id IS DISTINCT FROM p.id OR {differs} "
        f"UNION SELECT e.id FROM {STAGING}_existing e JOIN customers_orderitem i ON i.tenant_id = %(tenant)s AND i.order_id = e.id AND i.line_no > e.lines",
        params,
    )


def _load_orders(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    tenant = params["tenant"]
    # The file's orders the tenant already has, as they were: their customers need fresh
    # aggregates too (an order may change customer), and only they can have old lines beyond
    # the file's.
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING}_existing AS SELECT o.id, o.customer_id, g.lines, g.order_id, o.status, o.currency FROM customers_order o "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"JOIN {STAGING}_orders g ON o.tenant_id = %(tenant)s AND o.external_id = g.order_id",
        params,
    )
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {STAGING}_existing")  # internal table name only  # nosec B608
    else:
        # SQLite plans a join with a temporary table it has no index on as a scan of that table for
        # every row of the other: a re-import of 22k orders spent 27 s deleting no line.
        cursor.execute(f"CREATE INDEX {STAGING}_existing_id ON {STAGING}_existing (id)")  # internal names only  # nosec B608
        cursor.execute(f"CREATE INDEX {STAGING}_existing_order ON {STAGING}_existing (order_id)")  # internal names only  # nosec B608
    _keep_stored_lines(cursor, params)
    new_customers = _ensure_order_customers(cursor, params)
    _emails_from_ids(cursor, params)
    new_products = _ensure_products(cursor, params, "product_name", "category")
    _find_relined_orders(cursor, params)
    cursor.execute(f"SELECT (SELECT count(*) FROM {STAGING}_orders), (SELECT count(*) FROM {STAGING}_existing), (SELECT count(*) FROM {STAGING})")  # internal table/column names only; every value is a bound parameter  # nosec B608
    total, existing, lines = cursor.fetchone()
    new = total - existing
    written = _upsert(
        cursor,
        "customers_order",
        {
            "tenant_id": "%(tenant)s",
            "external_id": "g.order_id",
            "customer_id": "c.id",
            "ordered_at": "g.ordered_at",
            "amount": "g.amount",
            # A blank or absent currency or status keeps a stored order's (a file without the
            # status column does not make a cancelled order a sale again).
            "currency": "COALESCE(g.currency, e.currency, %(currency)s)",
            "status": "COALESCE(g.status, e.status, 'completed')",
            "created_at": "%(now)s",
            "updated_at": "%(now)s",
        },
        f"{STAGING}_orders g JOIN customers_customer c ON c.tenant_id = %(tenant)s AND c.external_id = g.customer_id "
        f"LEFT JOIN {STAGING}_existing e ON e.order_id = g.order_id",
        ["tenant_id", "external_id"],
        ["customer_id", "ordered_at", "amount", "currency", "status"],
        params,
        order_by="g.order_id",
    )
    lines_written = _upsert(
        cursor,
        "customers_orderitem",
        {
            "tenant_id": "%(tenant)s",
            "order_id": "o.id",
            "line_no": "l.line_no",
            "product_id": "p.id",
            "quantity": "l.quantity",
            "unit_price": "l.unit_price",
            "amount": "l.amount",
        },
        f"{_STAGED_LINES} l JOIN customers_order o ON o.tenant_id = %(tenant)s AND o.external_id = l.order_id "
        f"LEFT JOIN customers_product p ON p.tenant_id = %(tenant)s AND p.sku = l.sku",
        ["order_id", "line_no"],
        ["product_id", "quantity", "unit_price", "amount"],
        params,
        order_by="o.id, l.line_no",
    )
    # Lines beyond those in the file belonged to an earlier version of the order.
    cursor.execute(
        f"DELETE FROM customers_orderitem WHERE tenant_id = %(tenant)s AND EXISTS ("  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"  SELECT 1 FROM {STAGING}_existing e WHERE e.id = customers_orderitem.order_id AND customers_orderitem.line_no > e.lines)",
        params,
    )
    # An order whose own columns are as stored but whose lines changed was updated too.
    cursor.execute(
        f"UPDATE customers_order SET updated_at = %(now)s WHERE tenant_id = %(tenant)s AND updated_at <> %(now)s "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"AND id IN (SELECT id FROM {STAGING}_relined)",
        params,
    )
    relined = max(cursor.rowcount, 0)
    # The file's customers and the earlier customers of its orders, as one IN (see the docstring).
    refresh_customer_aggregates(
        cursor,
        tenant,
        f"c.id IN (SELECT f.id FROM customers_customer f JOIN {STAGING}_orders g ON f.tenant_id = %(tenant)s AND f.external_id = g.customer_id "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"UNION ALL SELECT customer_id FROM {STAGING}_existing)",
        params,
    )
    cursor.execute(f"SELECT status, count(*) FROM {STAGING}_orders WHERE status NOT IN ({KNOWN_STATUSES_SQL}) GROUP BY status ORDER BY count(*) DESC, status")  # internal names and constants only  # nosec B608
    unusual = dict(cursor.fetchall())
    cursor.execute(f"SELECT currency, count(*) FROM {STAGING}_orders WHERE currency <> %(currency)s GROUP BY currency "  # internal names only  # nosec B608
                   "ORDER BY count(*) DESC, currency", params)
    other_currencies = dict(cursor.fetchall())
    # Orders stored as not a sale (cancelled, refunded…) that the file makes sales again: a
    # correction, or an older export imported after a newer one, which undoes refunds unseen.
    cursor.execute(f"SELECT g.order_id, e.status, COALESCE(g.status, e.status) FROM {STAGING}_existing e JOIN {STAGING}_orders g ON g.order_id = e.order_id "  # internal names and constants only  # nosec B608
                   f"WHERE e.status IN ({NOT_REVENUE_SQL}) AND COALESCE(g.status, e.status) NOT IN ({NOT_REVENUE_SQL}) ORDER BY g.order_id")
    unrefunded = {order_id: f"{before} → {after}" for order_id, before, after in cursor.fetchall()}
    return ImportResult(
        "orders",
        True,
        unusual_statuses=unusual,
        other_currencies=other_currencies,
        sales_again=unrefunded,
        rows=total,
        created=new,
        updated=written - new + relined,
        unchanged=total - written - relined,
        # rows counts orders; lines, the file's lines (the upload page shows "Orders 5 (from 6 lines)").
        details={"lines": lines, "new_customers": new_customers, "new_products": new_products, "order_lines_written": lines_written},
    )


def _load_reviews(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    tenant = params["tenant"]
    # The customers the file's reviews already belong to: a review moved to another customer
    # leaves its earlier one with a review fewer (as _load_orders does for orders).
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING}_existing AS SELECT DISTINCT r.customer_id FROM customers_review r "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"JOIN {STAGING} s ON r.tenant_id = %(tenant)s AND r.external_id = s.review_id",
        params,
    )
    # A blank or absent rating or sku keeps the stored review's (product_name only names new products).
    _keep_stored_for_blanks(cursor, spec, "customers_review", "external_id", {"rating": "t.rating", "sku": "p.sku"}, params,
                            join="LEFT JOIN customers_product p ON p.id = t.product_id")
    new_customers = _ensure_customers(cursor, params, "created_at")
    _emails_from_ids(cursor, params)
    new_products = _ensure_products(cursor, params, "product_name", None)
    total, new = _count_new(cursor, "customers_review", "external_id", tenant, spec)
    written = _upsert(
        cursor,
        "customers_review",
        {
            "tenant_id": "%(tenant)s",
            "external_id": "s.review_id",
            "customer_id": "c.id",
            "product_id": "p.id",
            "rating": "s.rating",
            "text": "s.text",
            "created_at": "s.created_at",
            "updated_at": "%(now)s",
        },
        f"{STAGING} s JOIN customers_customer c ON c.tenant_id = %(tenant)s AND c.external_id = s.customer_id "
        f"LEFT JOIN customers_product p ON p.tenant_id = %(tenant)s AND p.sku = s.sku",
        ["tenant_id", "external_id"],
        ["customer_id", "product_id", "rating", "text", "created_at"],
        params,
        where=f"s.row_no IN (SELECT min(row_no) FROM {STAGING} GROUP BY review_id)",  # internal table/column names only; every value is a bound parameter  # nosec B608
        order_by="s.review_id",
    )
    if written > new:
        # A changed review is read again: its sentiment and aspect are recomputed by the next scoring.
        cursor.execute(
            "UPDATE customers_review SET sentiment = '', sentiment_score = NULL, aspect = '' "  # internal table/column names only; every value is a bound parameter  # nosec B608
            f"WHERE tenant_id = %(tenant)s AND updated_at = %(now)s AND external_id IN (SELECT review_id FROM {STAGING})",
            params,
        )
    # The file's customers and the earlier customers of its reviews, as one IN (see refresh_customer_aggregates).
    refresh_customer_aggregates(
        cursor,
        tenant,
        f"c.id IN (SELECT f.id FROM customers_customer f WHERE f.tenant_id = %(tenant)s AND f.external_id IN (SELECT customer_id FROM {STAGING}) "  # internal table/column names only; every value is a bound parameter  # nosec B608
        f"UNION ALL SELECT customer_id FROM {STAGING}_existing)",
        params,
    )
    return ImportResult(
        "reviews",
        True,
        rows=total,
        created=new,
        updated=written - new,
        unchanged=total - written,
        details={"new_customers": new_customers, "new_products": new_products},
    )


LOADERS = {"customers": _load_customers, "products": _load_products, "orders": _load_orders, "reviews": _load_reviews}


def _record_ids(cursor: Any, spec: Spec, tenant_id: int) -> dict[str, int]:
    """The staged rows' records as stored now: id as sent → numeric id (a bulk request's rows
    are few; a file's are not asked for)."""
    table, column = _TABLES[spec.kind][0], "sku" if spec.kind == "products" else "external_id"
    cursor.execute(
        f"SELECT DISTINCT s.{spec.key}, t.id FROM {STAGING} s JOIN {table} t ON t.tenant_id = %s AND t.{column} = s.{spec.key}",  # internal table/column names only; every value is a bound parameter  # nosec B608
        [tenant_id],
    )
    return dict(sorted(cursor.fetchall(), key=lambda pair: pair[1]))


def _present_columns(spec: Spec, header: list[str]) -> set[str]:
    present = {column_name(name) for name in header}
    if spec.kind == "customers" and present - {c.name for c in spec.columns}:
        present.add("attributes")
    return present


# The PostgreSQL advisory lock class of "one import per tenant at a time" (the tenant's id is the key).
SHOP_LOCK = 7301
# How often an import waiting for another import of its shop tries the lock again.
SHOP_LOCK_RETRY_SECONDS = 0.25
# An import gives up waiting for another of its shop after this long (a first import of a few
# million lines writes for minutes; none writes for an hour).
SHOP_LOCK_MAX_WAIT_SECONDS = 3600


def take_shop_write_lock(cursor: Any, tenant_id: int) -> None:
    """The shop's turn to write (PostgreSQL), held to the end of the transaction: an import,
    and a change of one order or review, wait for the one writing before them."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SHOP_LOCK, tenant_id])


@contextmanager
def _shop_lock_reporting_the_wait(tenant: Tenant, progress: ProgressCallback) -> Iterator[None]:
    """Hold the shop's import lock for the block, at session level, first waiting for it with
    reports: the job says what it waits for, keeps its heartbeat, and a cancel (which the
    reporter raises) stops it during the wait. A blocking pg_advisory_xact_lock inside the
    write transaction would wait silently, past the job's last chance to be cancelled.
    Advisory locks are re-entrant within a session, so the transaction's own xact lock is
    then taken at once. A bulk API upsert, which reports nothing, waits on that one."""
    deadline = time.monotonic() + SHOP_LOCK_MAX_WAIT_SECONDS
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SHOP_LOCK, tenant.pk])
            if cursor.fetchone()[0]:
                break
            if time.monotonic() > deadline:
                raise ImportError_(f"Another import of this shop has been writing for over {SHOP_LOCK_MAX_WAIT_SECONDS // 60} minutes; "
                                   "nothing was imported. Try again once it has finished (the Imports page shows it).")
            progress(0.6, "Waiting for another import of this shop to finish")
            time.sleep(SHOP_LOCK_RETRY_SECONDS)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SHOP_LOCK, tenant.pk])
        except DatabaseError:
            # A session lock must not outlive the import on a reused connection: closing the
            # connection ends the session and releases it. (When the connection failed along
            # with the import, the lock went with it.)
            connection.close()


def sql_now() -> Any:
    """Now, as the set-based statements bind it: SQLite keeps Django datetimes as naive UTC
    text (as ``_stager`` stages them), PostgreSQL takes an aware datetime."""
    now = timezone.now()
    return now if connection.vendor == "postgresql" else now.replace(tzinfo=None).isoformat(" ")


def _load(tenant: Tenant, spec: Spec, staging: _Staging, present: set[str], progress: ProgressCallback | None, *, from_file: bool = True,
          dry_run: bool = False, create_only: bool = False) -> ImportResult:
    params = {"tenant": tenant.pk, "now": sql_now(), "currency": tenant.currency}
    postgres = connection.vendor == "postgresql"
    with ExitStack() as shop_lock:
        if progress:
            if postgres:
                shop_lock.enter_context(_shop_lock_reporting_the_wait(tenant, progress))
            # Reported before the transaction opens, so that the job row is not locked by it. A
            # job's cancel is still looked for before each statement of the write, and rolls it back.
            getattr(progress, "checkpoint", progress)(0.65, "Checking against the stored data" if dry_run else "Writing to the database")
        watch = getattr(progress, "cancel_watch", nullcontext)
        with watch(), transaction.atomic(), connection.cursor() as cursor:
            if postgres:
                # One import per tenant at a time: concurrent imports of the same file then end
                # exactly as one import does, with no deadlock between their upserts.
                take_shop_write_lock(cursor, tenant.pk)
                _plan_joins(cursor, spec, tenant.pk, staging.rows)
            copied_orders, copied_rows = drop_repeated_orders(cursor) if spec.kind == "orders" else (0, 0)
            duplicates, total = file_duplicates(cursor, spec)
            if total:
                transaction.set_rollback(True)
                collector = _Collector(settings.IMPORT_MAX_REPORTED_ERRORS)
                collector.add_staged(duplicates, total)
                raise collector.fail("file" if from_file else "rows")
            result = LOADERS[spec.kind](cursor, spec, params, present)
            if staging.repeats:
                # Each copy of an order repeats its lines as the first did: counted once.
                repeats = staging.repeats if not copied_rows else _adjacent_repeats(cursor)
                if repeats:
                    result.details["repeated_lines"] = repeats
            if copied_orders:
                result.details["orders_read_once"], result.details["copied_rows_left_out"] = copied_orders, copied_rows
            if dry_run:
                # The same statements as an import, so the same checks and counts, then undone.
                transaction.set_rollback(True)
                result.dry_run = True
                return result
            if not from_file:
                result.ids = _record_ids(cursor, spec, tenant.pk)
            if create_only and not result.created:
                # Decided under the shop's write lock, so two creates of one id cannot both pass;
                # raising rolls back the customers or products the rows made on the way.
                raise RecordExists(result.ids)
            if result.created or (result.updated and spec.kind != "customers"):
                # Cached aggregates count customers and sum orders and reviews: a change of a
                # customer's email or country leaves them as they are.
                # A file shows at once; an API batch may lag on cached pages for up to a minute.
                bump_data_version(tenant.pk, hard=from_file)
    if postgres and result.created + result.updated + sum(result.details.values()) >= ANALYZE_AFTER_ROWS:
        # Right after the commit rather than whenever autovacuum gets to them: a next import
        # planned on statistics that miss a million new rows could still pick the quadratic
        # nested loops _plan_joins avoids.
        refresh_statistics(*_TABLES[spec.kind])
    return result


# How many ignored columns the message lists by name (the result lists them all).
IGNORED_COLUMNS_NAMED = 10


def _first_named(items: list[str]) -> str:
    """``a, b, c and 4 more``: the first IGNORED_COLUMNS_NAMED items, then how many others."""
    more = len(items) - IGNORED_COLUMNS_NAMED
    return ", ".join(items[:IGNORED_COLUMNS_NAMED]) + (f" and {more:,} more" if more > 0 else "")


def _tally(counts: dict[str, int]) -> tuple[int, str]:
    """What a result counts by value (statuses, currencies, countries): the total, and the first
    values with their counts, ``pending (17), authorized (16)``."""
    return sum(counts.values()), _first_named([f"{value} ({count:,})" for value, count in counts.items()])


def _finish(result: ImportResult, spec: Spec, header: list[str], export: shopify.Export | None = None) -> ImportResult:
    noun = result.kind if result.rows != 1 else result.kind.removesuffix("s")
    if result.dry_run:
        result.message = (f"Checked {result.rows:,} {noun}: no errors. Importing {'them' if result.rows != 1 else 'it'} would make {result.created:,} new, "
                          f"update {result.updated:,} and leave {result.unchanged:,} unchanged. Nothing was written.")
    else:
        result.message = f"Imported {result.rows:,} {noun}: {result.created:,} new, {result.updated:,} updated, {result.unchanged:,} unchanged."
    if export is not None:  # a Shopify export: how it was read (its columns not read are the ignored ones)
        result.message += f" {export.note()}"
    # A customer's extra columns are its attributes; any other kind drops them. Either way, say so.
    known = {c.name for c in spec.columns}
    extra = [name for name in dict.fromkeys(header) if name and column_name(name) not in known]
    if spec.kind == "customers":
        result.attribute_columns = [column_name(name) for name in extra]
    if export is not None:  # the export's columns it does not read, as it names them
        result.ignored_columns = export.unread
    elif spec.kind != "customers":
        result.ignored_columns = extra
    once = result.details.get("orders_read_once", 0)
    if once:
        result.message += (f" {once:,} order{'s' if once != 1 else ''} came again further down the file with the same lines "
                           f"({result.details['copied_rows_left_out']:,} rows, as two overlapping exports pasted together make): "
                           f"{'each was' if once != 1 else 'it was'} read once.")
    repeated = result.details.get("repeated_lines", 0)
    if repeated:
        result.message += (f" {repeated:,} line{'s' if repeated != 1 else ''} repeat{'s' if repeated == 1 else ''} the line before cell for cell: "
                           f"{'each counts' if repeated != 1 else 'it counts'} as another line of its order. If your export doubled them, remove them and import the file again.")
    if result.unusual_statuses:
        orders, named = _tally(result.unusual_statuses)
        if export is not None:  # Shopify's own payment states (pending, authorized): the merchant cannot rename them
            result.message += (f" {orders:,} order{'s have' if orders != 1 else ' has'} a payment status that is not yet a sale's, counted as a sale: {named}. "
                               "Import a newer export once they are paid, refunded or voided, and it updates them.")
        else:
            result.message += (f" {orders:,} order{'s have' if orders != 1 else ' has'} a status this app does not know, counted as a sale: {named}. "
                               f"If one is not a sale, send it as {parsing.one_of(Order.NOT_REVENUE)}.")
    if result.sales_again:
        count = len(result.sales_again)
        named = _first_named([f"{order_id} ({change})" for order_id, change in result.sales_again.items()])
        verb = "would make" if result.dry_run else "made"
        result.message += (f" The import {verb} {count:,} order{'s' if count != 1 else ''} that {'were' if count != 1 else 'was'} cancelled, refunded, failed or voided "
                           f"{'sales' if count != 1 else 'a sale'} again: {named}. If its data is older than data imported before (an older export), import the newer again.")
    if result.other_currencies:
        orders, named = _tally(result.other_currencies)
        result.message += (f" {orders:,} order{'s are' if orders != 1 else ' is'} in another currency than the shop's: {named}. Totals, charts and models add "
                           "amounts as they are, with no exchange rates: export amounts in the shop's currency, or, if the shop sells in another, set that one in Settings.")
    if result.unknown_countries:
        customers, named = _tally(result.unknown_countries)
        result.message += (f" {customers:,} customer{'s have' if customers != 1 else ' has'} a country this app does not recognise, kept as written: {named}. "
                           "The country filters find them only as written; if one is a typo, correct it and import the file again.")
    if result.attribute_columns:
        count = len(result.attribute_columns)
        result.message += f" Kept {count:,} column{'s' if count != 1 else ''} as attributes: {_first_named(result.attribute_columns)}."
    if result.ignored_columns:
        count = len(result.ignored_columns)
        result.message += f" Ignored {count:,} column{'s' if count != 1 else ''} that {spec.kind} do not use: {_first_named(result.ignored_columns)}."
    # A column without a name in the header has nowhere to go (a spreadsheet's trailing commas,
    # or a header cell left empty): its values are dropped, and the message says where.
    unnamed = [str(position + 1) for position, name in enumerate(header) if not name.strip()]
    if unnamed:
        result.message += f" Ignored {len(unnamed):,} column{'s' if len(unnamed) != 1 else ''} without a name in the header (column {_first_named(unnamed)})."
    return result


def _failed(kind: str, exc: ImportError_, *, dry_run: bool = False) -> ImportResult:
    message = exc.message
    if dry_run and message.startswith(NOTHING_IMPORTED):  # a check that found errors did its job: it did not fail to import
        found = message.removeprefix(NOTHING_IMPORTED)
        message = "The check found " + (found if found[:1].isdigit() else "a problem: " + found)  # "1 error in 1 row" / "a problem: the header …"
    return ImportResult(kind, False, errors=exc.errors, error_count=exc.error_count or len(exc.errors), message=message, dry_run=dry_run)


NOTHING_IMPORTED = "Nothing was imported: "


def import_csv(tenant: Tenant, kind: str, path: str, *, progress: ProgressCallback | None = None, dry_run: bool = False) -> ImportResult:
    """Import a CSV file of ``kind`` for ``tenant``: all rows or none. A dry run checks it as
    an import would and reports what importing it would do, writing nothing."""
    spec = _spec(kind)
    export = None
    try:
        with _Staging(spec, shop_zone(tenant)) as staging:
            header, export = validate_file(spec, path, staging, progress=progress)
            result = _load(tenant, spec, staging, _present_columns(spec, header), progress, dry_run=dry_run)
    except ImportError_ as exc:
        return _failed(kind, export.named(exc) if export is not None else exc, dry_run=dry_run)
    if isinstance(export, shopify.CustomersExport) and not dry_run:
        export.under_two_emails(tenant)
    if progress:
        progress(1.0, "Done")
    return _finish(result, spec, header, export)


def import_rows(tenant: Tenant, kind: str, rows: list[dict[str, Any]], *, dry_run: bool = False, create_only: bool = False) -> ImportResult:
    """Import JSON rows of ``kind`` for ``tenant`` (the REST bulk upsert): all rows or none,
    or with ``dry_run`` only checked. With ``create_only`` (the rows of one new record, as
    the API's create sends them) a record that exists raises RecordExists, writing nothing."""
    spec = _spec(kind)
    try:
        with _Staging(spec, shop_zone(tenant)) as staging:
            header = validate_rows(spec, rows, staging)
            result = _load(tenant, spec, staging, _present_columns(spec, header), None, from_file=False, dry_run=dry_run, create_only=create_only)
    except ImportError_ as exc:
        return _failed(kind, exc, dry_run=dry_run)
    return _finish(result, spec, [name for name in header if name])  # a blank key with a value was refused, one without is nothing


def _spec(kind: str) -> Spec:
    if kind not in SPECS:
        raise ValueError(f"Unknown import kind {kind!r}; expected one of {', '.join(KINDS)}")
    return SPECS[kind]
