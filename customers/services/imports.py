"""The one import service behind the web upload, the CLI and the REST bulk endpoints.

An import runs in two phases so that a bad file changes nothing:

1. **Validate, streaming.** Rows are read one at a time, checked column by column, and
   the clean values are written to a spooled temporary file (memory stays bounded). Every
   bad row is reported (row number, column, message) up to a cap. Any error stops here.
2. **Load, set-based, in one transaction.** The clean rows go into a temporary staging
   table (PostgreSQL ``COPY``; ``executemany`` on SQLite), duplicates inside the file are
   checked in SQL, and ``INSERT … ON CONFLICT DO UPDATE … WHERE <changed>`` statements
   upsert customers, products, orders, lines and reviews. Unchanged rows are not touched,
   so importing the same file twice changes nothing. Customer aggregates are refreshed
   for the customers the file touched.

Row numbers count the header as row 1, as a spreadsheet shows them. For JSON rows (the
API) row N is the N-th item.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from clmsite.models import Tenant
from customers.services import parsing
from customers.services.parsing import FieldError

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
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    sql_type: str = "text"  # the staging column's type: text, ts, money, int


def _text(max_length: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        return parsing.parse_text(raw, max_length=max_length)

    return parse


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


ID = _text(128)
SPECS: dict[str, Spec] = {
    "customers": Spec(
        "customers",
        key="customer_id",
        columns=(
            Column("customer_id", ID, required=True),
            Column("email", parsing.parse_email),
            Column("name", _text(200)),
            Column("country", _text(64)),
            Column("created_at", parsing.parse_datetime, sql_type="ts"),
        ),
        computed=(("attributes", "json"),),
    ),
    "products": Spec(
        "products",
        key="sku",
        columns=(
            Column("sku", ID, required=True),
            Column("name", _text(300)),
            Column("category", _text(128)),
            Column("price", parsing.parse_money, sql_type="money"),
        ),
    ),
    "orders": Spec(
        "orders",
        key="order_id",
        columns=(
            Column("customer_id", ID, required=True),
            Column("order_id", ID, required=True),
            Column("ordered_at", parsing.parse_datetime, required=True, sql_type="ts"),
            Column("amount", parsing.parse_money, required=True, sql_type="money"),
            Column("currency", parsing.parse_currency),
            Column("quantity", parsing.parse_positive_int, sql_type="int"),
            Column("sku", ID),
            Column("product_name", _text(300)),
            Column("category", _text(128)),
            Column("status", _text(32)),
        ),
        computed=(("unit_price", "money"),),
    ),
    "reviews": Spec(
        "reviews",
        key="review_id",
        columns=(
            Column("customer_id", ID, required=True),
            Column("review_id", ID, required=True),
            Column("created_at", parsing.parse_datetime, required=True, sql_type="ts"),
            Column("text", _text(20_000), required=True),
            Column("rating", parsing.parse_rating, sql_type="int"),
            Column("sku", ID),
            Column("product_name", _text(300)),
        ),
    ),
}


# --- Phase 1: read and validate ----------------------------------------------------------


class _Collector:
    """Collects row errors up to the cap while counting all of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.errors: list[RowError] = []
        self.count = 0
        self.bad_rows: set[int] = set()

    def add(self, row: int, column: str, message: str) -> None:
        self.count += 1
        self.bad_rows.add(row)
        if len(self.errors) < self.cap:
            self.errors.append(RowError(row, column, message))

    def fail(self, what: str) -> ImportError_:
        shown = f" (the first {len(self.errors)} are listed)" if self.count > len(self.errors) else ""
        errors = "1 error" if self.count == 1 else f"{self.count:,} errors"
        rows = "1 row" if len(self.bad_rows) == 1 else f"{len(self.bad_rows):,} rows"
        return ImportError_(
            f"Nothing was imported: {errors} in {rows}{shown}. Fix them and upload the {what} again.",
            self.errors,
            self.count,
        )


def _staging_value(value: Any, sql_type: str, vendor: str) -> Any:
    if value is None or value == "":
        return None
    if sql_type == "ts":
        # SQLite keeps Django datetimes as naive UTC text; PostgreSQL takes ISO with offset.
        return value.replace(tzinfo=None).isoformat(" ") if vendor == "sqlite" else value.isoformat()
    if sql_type == "money":
        return str(value)
    return value


class _ValidatedFile:
    """Clean rows spooled to a temporary CSV file: in memory while small, on disk when big."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        self.file = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        self.rows = 0

    def write(self, values: list[Any]) -> None:
        self.writer.writerow(values)
        self.rows += 1

    def rewind(self) -> IO[str]:
        self.file.flush()
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        self.file.close()


def _validate_records(
    spec: Spec,
    header: list[str],
    records: Iterable[tuple[int, list[str]]],
    *,
    max_rows: int,
    progress: Callable[[], None] | None = None,
) -> _ValidatedFile:
    collector = _Collector(settings.IMPORT_MAX_REPORTED_ERRORS)
    names = [h.strip().lower() for h in header]
    if not any(names):
        raise ImportError_("The file has no header row. The first line must name the columns.", [RowError(1, "", "empty header")])
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen and name:
            collector.add(1, name, f"column appears twice (positions {seen[name] + 1} and {index + 1})")
        seen[name] = index
    for name in spec.required:
        if name not in seen:
            collector.add(1, name, f"missing required column '{name}'")
    if collector.count:
        required = ",".join(spec.required)
        raise ImportError_(f"Nothing was imported: the header must contain {required}.", collector.errors, collector.count)

    vendor = connection.vendor
    positions = [(column, seen.get(column.name)) for column in spec.columns]
    known = {c.name for c in spec.columns}
    extra = [(name, index) for name, index in seen.items() if name and name not in known]
    width = len(names)
    out = _ValidatedFile(names)
    rows = 0
    try:
        for row_no, values in records:
            rows += 1
            if rows > max_rows:
                raise ImportError_(f"Nothing was imported: the file has more than {max_rows:,} rows, the limit per import. Split it into smaller files.")
            if progress is not None and rows % 5000 == 0:
                progress()
            if len(values) != width:
                if not any(v.strip() for v in values):
                    rows -= 1  # blank line
                    continue
                collector.add(row_no, "", f"has {len(values)} fields but the header has {width}")
                continue
            staged: list[Any] = [row_no]
            parsed: dict[str, Any] = {}
            bad = False
            for column, index in positions:
                raw = values[index] if index is not None else ""
                if "\x00" in raw:
                    collector.add(row_no, column.name, "contains a NUL byte")
                    bad = True
                    continue
                if not raw.strip():
                    if column.required:
                        collector.add(row_no, column.name, "is required")
                        bad = True
                    parsed[column.name] = None
                    staged.append(None)
                    continue
                try:
                    value = column.parse(raw)
                except FieldError as exc:
                    collector.add(row_no, column.name, str(exc))
                    bad = True
                    continue
                parsed[column.name] = value
                staged.append(_staging_value(value, column.sql_type, vendor))
            if bad:
                continue
            if spec.kind == "orders":
                staged.append(str((parsed["amount"] / (parsed["quantity"] or 1)).quantize(parsing.CENT)))
            elif spec.kind == "customers":
                attributes = {}
                for name, index in extra:
                    text = values[index].strip()
                    if "\x00" in text:
                        collector.add(row_no, name, "contains a NUL byte")
                        bad = True
                    elif text:
                        attributes[name] = text[:1000]
                staged.append(json.dumps(attributes, sort_keys=True) if extra else None)
            if not bad:
                out.write(staged)
    except BaseException:
        out.close()
        raise
    if collector.count:
        out.close()
        raise collector.fail("file")
    if rows == 0:
        out.close()
        raise ImportError_("Nothing was imported: the file has a header but no data rows.", [RowError(2, "", "no data rows")])
    return out


def _csv_records(text: IO[str]) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(text)
    record_no = 0  # the header is row 1
    try:
        for values in reader:
            record_no += 1
            yield record_no, values
    except csv.Error as exc:
        message = str(exc)
        if "field larger" in message:
            message = f"a field is longer than {MAX_FIELD_CHARS:,} characters"
        raise ImportError_(
            f"Nothing was imported: row {record_no + 1} cannot be read as CSV ({message}).",
            [RowError(record_no + 1, "", message)],
        ) from None


def _open_text(path: str, encoding: str) -> IO[str]:
    # newline="" lets csv handle CRLF and quoted line breaks itself.
    return open(path, encoding=encoding, newline="")  # noqa: SIM115


def _looks_binary(head: bytes) -> bool:
    """A NUL in the header line, or mostly control bytes, means this is not a CSV export.
    (A stray NUL further down is reported against its row instead.)"""
    first_line = head.split(b"\n", 1)[0]
    control = sum(1 for byte in head if byte < 9 or 13 < byte < 32)
    return b"\x00" in first_line or control > len(head) * 0.1


def validate_file(
    spec: Spec, path: str, *, progress: ProgressCallback | None = None
) -> _ValidatedFile:
    size = os.path.getsize(path)
    limit = settings.IMPORT_MAX_BYTES
    if size > limit:
        raise ImportError_(f"Nothing was imported: the file is {size / 1e6:,.1f} MB; the limit is {limit / 1e6:,.0f} MB. Split it into smaller files.")
    if size == 0:
        raise ImportError_("Nothing was imported: the file is empty.", [RowError(1, "", "empty file")])
    with open(path, "rb") as raw:
        head = raw.read(4096)
    if _looks_binary(head):
        raise ImportError_("Nothing was imported: this is not a text CSV file (it contains binary data).", [RowError(1, "", "binary data")])
    # UTF-8 (with or without BOM) first; a file that is not valid UTF-8 is read as Latin-1,
    # the usual export encoding of older spreadsheets.
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            with _open_text(path, encoding) as text:
                reader = _csv_records(text)
                try:
                    _, header = next(reader)
                except StopIteration:
                    raise ImportError_("Nothing was imported: the file is empty.", [RowError(1, "", "empty file")]) from None

                def report() -> None:
                    if progress is not None:
                        position = text.buffer.tell() if hasattr(text, "buffer") else 0
                        progress(0.6 * min(position / size, 1.0), "Checking rows")

                return _validate_records(
                    spec, header, reader, max_rows=settings.IMPORT_MAX_ROWS, progress=report
                )
        except UnicodeDecodeError:
            continue
    raise ImportError_("Nothing was imported: the file's text encoding is not recognised; save it as UTF-8.")  # pragma: no cover


def validate_rows(spec: Spec, rows: list[dict[str, Any]]) -> _ValidatedFile:
    """Validate JSON objects (the REST bulk endpoints) exactly as CSV rows are validated."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ImportError_("Send a JSON list of objects, one per row.")
    if len(rows) > settings.API_BULK_MAX_ROWS:
        raise ImportError_(f"Nothing was imported: {len(rows):,} rows sent; the limit per request is {settings.API_BULK_MAX_ROWS:,}.")
    header: list[str] = []
    for row in rows:
        for name in row:
            if name not in header:
                header.append(str(name))

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool | dict | list):
            return json.dumps(value)
        return str(value)

    records = ((index + 1, [cell(row.get(name)) for name in header]) for index, row in enumerate(rows))
    return _validate_records(spec, header or [spec.key], records, max_rows=settings.API_BULK_MAX_ROWS)


# --- Phase 2: load -----------------------------------------------------------------------

_PG_TYPES = {"text": "text", "ts": "timestamptz", "money": "numeric(14,2)", "int": "integer", "json": "jsonb"}
_SQLITE_TYPES = {"text": "text", "ts": "text", "money": "numeric", "int": "integer", "json": "text"}
STAGING = "clm_import_staging"


def _create_staging(cursor: Any, spec: Spec, clean: _ValidatedFile) -> None:
    types = _PG_TYPES if connection.vendor == "postgresql" else _SQLITE_TYPES
    columns = spec.staging_columns
    cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
    ddl = ", ".join(f"{name} {types[kind]}" for name, kind in columns)
    cursor.execute(f"CREATE TEMPORARY TABLE {STAGING} ({ddl})")
    names = ", ".join(name for name, _ in columns)
    source = clean.rewind()
    if connection.vendor == "postgresql":
        with cursor.copy(f"COPY {STAGING} ({names}) FROM STDIN WITH (FORMAT csv)") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
    else:
        placeholders = ", ".join("%s" for _ in columns)

        def rows() -> Iterator[list[str | None]]:
            for values in csv.reader(source):
                yield [v if v != "" else None for v in values]

        cursor.executemany(f"INSERT INTO {STAGING} ({names}) VALUES ({placeholders})", rows())
    cursor.execute(f"CREATE INDEX {STAGING}_key ON {STAGING} ({spec.key})")
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {STAGING}")


def _duplicate_errors(cursor: Any, spec: Spec) -> list[RowError]:
    """Rows that repeat a key of an earlier row with different data (order lines may
    repeat an order id, but must agree on its customer, time, currency and status)."""
    if spec.kind == "orders":
        compare = ["customer_id", "ordered_at", "currency", "status"]
    else:
        compare = [c.name for c in spec.columns if c.name != spec.key]
    key = spec.key
    first = f"(SELECT min(row_no) AS row_no, {key} AS k FROM {STAGING} GROUP BY {key} HAVING count(*) > 1)"
    checks = " OR ".join(f"s.{name} IS DISTINCT FROM f.{name}" for name in compare)
    cursor.execute(
        f"SELECT s.row_no, f.row_no, {', '.join(f's.{n} IS DISTINCT FROM f.{n}' for n in compare)} "
        f"FROM {STAGING} s JOIN {first} d ON d.k = s.{key} JOIN {STAGING} f ON f.row_no = d.row_no "
        f"WHERE s.row_no > f.row_no AND ({checks}) ORDER BY s.row_no LIMIT %s",
        [settings.IMPORT_MAX_REPORTED_ERRORS],
    )
    errors = []
    for row_no, first_row, *differs in cursor.fetchall():
        column = next(name for name, differ in zip(compare, differs, strict=True) if differ)
        what = "order line" if spec.kind == "orders" else "row"
        errors.append(RowError(row_no, column, f"{key} repeats row {first_row} with a different {column} in this {what}"))
    return errors


def _count_new(cursor: Any, table: str, key_column: str, tenant_id: int, spec: Spec) -> tuple[int, int]:
    cursor.execute(
        f"SELECT count(*), sum(CASE WHEN t.id IS NULL THEN 1 ELSE 0 END) FROM (SELECT DISTINCT {spec.key} AS k FROM {STAGING}) g "
        f"LEFT JOIN {table} t ON t.tenant_id = %s AND t.{key_column} = g.k",
        [tenant_id],
    )
    total, new = cursor.fetchone()
    return int(total or 0), int(new or 0)


def _upsert(cursor: Any, table: str, columns: list[str], select_sql: str, conflict: list[str], update: list[str], params: dict[str, Any]) -> int:
    """INSERT … SELECT … ON CONFLICT DO UPDATE only where something differs; returns rows written."""
    if update:
        sets = ", ".join(f"{c} = excluded.{c}" for c in update + ["updated_at"] if c in columns)
        changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM excluded.{c}" for c in update)
        action = f"DO UPDATE SET {sets} WHERE {changed}"
    else:
        action = "DO NOTHING"
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) {select_sql} ON CONFLICT ({', '.join(conflict)}) {action}",
        params,
    )
    return max(cursor.rowcount, 0)


def _ensure_customers(cursor: Any, params: dict[str, Any], first_seen_column: str) -> int:
    """Create customers the file mentions but the tenant does not have yet."""
    return _upsert(
        cursor,
        "customers_customer",
        ["tenant_id", "external_id", "email", "name", "country", "first_seen", "attributes", "order_count", "total_spent", "review_count", "created_at", "updated_at"],
        f"SELECT %(tenant)s, customer_id, '', '', '', min({first_seen_column}), '{{}}', 0, 0, 0, %(now)s, %(now)s FROM {STAGING} WHERE true GROUP BY customer_id",
        ["tenant_id", "external_id"],
        [],
        params,
    )


def _ensure_products(cursor: Any, params: dict[str, Any], name_column: str, category_column: str | None) -> int:
    category = f"COALESCE(max({category_column}), '')" if category_column else "''"
    return _upsert(
        cursor,
        "customers_product",
        ["tenant_id", "sku", "name", "category", "price", "created_at", "updated_at"],
        f"SELECT %(tenant)s, sku, COALESCE(max({name_column}), ''), {category}, NULL, %(now)s, %(now)s "
        f"FROM {STAGING} WHERE sku IS NOT NULL GROUP BY sku",
        ["tenant_id", "sku"],
        [],
        params,
    )


def refresh_customer_aggregates(cursor: Any, tenant_id: int, customer_filter_sql: str, params: dict[str, Any]) -> None:
    """Recompute order and review aggregates for the customers selected by the filter."""
    cursor.execute(
        f"""
        UPDATE customers_customer SET
            order_count = agg.order_count, total_spent = agg.total_spent,
            first_order_at = agg.first_order_at, last_order_at = agg.last_order_at,
            review_count = agg.review_count, updated_at = %(now)s
        FROM (
            SELECT c.id AS id, count(o.id) AS order_count, COALESCE(sum(o.amount), 0) AS total_spent,
                min(o.ordered_at) AS first_order_at, max(o.ordered_at) AS last_order_at,
                (SELECT count(*) FROM customers_review r WHERE r.customer_id = c.id) AS review_count
            FROM customers_customer c LEFT JOIN customers_order o ON o.customer_id = c.id
            WHERE c.tenant_id = %(tenant)s AND {customer_filter_sql}
            GROUP BY c.id
        ) agg
        WHERE customers_customer.id = agg.id AND (
            customers_customer.order_count IS DISTINCT FROM agg.order_count
            OR customers_customer.total_spent IS DISTINCT FROM agg.total_spent
            OR customers_customer.first_order_at IS DISTINCT FROM agg.first_order_at
            OR customers_customer.last_order_at IS DISTINCT FROM agg.last_order_at
            OR customers_customer.review_count IS DISTINCT FROM agg.review_count)
        """,
        {**params, "tenant": tenant_id},
    )


def _load_customers(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    total, new = _count_new(cursor, "customers_customer", "external_id", params["tenant"], spec)
    # Only the columns the file has are updated: a file of emails does not blank out names.
    mapping = {"email": "email", "name": "name", "country": "country", "created_at": "first_seen", "attributes": "attributes"}
    update = [target for source, target in mapping.items() if source in present]
    written = _upsert(
        cursor,
        "customers_customer",
        ["tenant_id", "external_id", "email", "name", "country", "first_seen", "attributes", "order_count", "total_spent", "review_count", "created_at", "updated_at"],
        f"SELECT %(tenant)s, customer_id, COALESCE(email, ''), COALESCE(name, ''), COALESCE(country, ''), created_at, "
        f"COALESCE(attributes, '{{}}'), 0, 0, 0, %(now)s, %(now)s FROM {STAGING} "
        f"WHERE row_no IN (SELECT min(row_no) FROM {STAGING} GROUP BY customer_id)",
        ["tenant_id", "external_id"],
        update,
        params,
    )
    return ImportResult("customers", True, rows=total, created=new, updated=written - new, unchanged=total - written)


def _load_products(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    total, new = _count_new(cursor, "customers_product", "sku", params["tenant"], spec)
    update = [c for c in ("name", "category", "price") if c in present]
    written = _upsert(
        cursor,
        "customers_product",
        ["tenant_id", "sku", "name", "category", "price", "created_at", "updated_at"],
        f"SELECT %(tenant)s, sku, COALESCE(name, ''), COALESCE(category, ''), price, %(now)s, %(now)s FROM {STAGING} "
        f"WHERE row_no IN (SELECT min(row_no) FROM {STAGING} GROUP BY sku)",
        ["tenant_id", "sku"],
        update,
        params,
    )
    return ImportResult("products", True, rows=total, created=new, updated=written - new, unchanged=total - written)


def _load_orders(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    tenant = params["tenant"]
    cursor.execute(f"DROP TABLE IF EXISTS {STAGING}_touched")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING}_touched AS SELECT DISTINCT o.customer_id AS id FROM customers_order o "
        f"JOIN (SELECT DISTINCT order_id FROM {STAGING}) g ON o.tenant_id = %s AND o.external_id = g.order_id",
        [tenant],
    )
    new_customers = _ensure_customers(cursor, params, "ordered_at")
    new_products = _ensure_products(cursor, params, "product_name", "category")
    total, new = _count_new(cursor, "customers_order", "external_id", tenant, spec)
    written = _upsert(
        cursor,
        "customers_order",
        ["tenant_id", "external_id", "customer_id", "ordered_at", "amount", "currency", "status", "created_at", "updated_at"],
        f"SELECT %(tenant)s, g.order_id, c.id, g.ordered_at, g.amount, g.currency, g.status, %(now)s, %(now)s FROM ("
        f"  SELECT order_id, min(customer_id) AS customer_id, min(ordered_at) AS ordered_at, sum(amount) AS amount,"
        f"  COALESCE(min(currency), %(currency)s) AS currency, COALESCE(min(status), 'completed') AS status"
        f"  FROM {STAGING} GROUP BY order_id) g "
        f"JOIN customers_customer c ON c.tenant_id = %(tenant)s AND c.external_id = g.customer_id WHERE true",
        ["tenant_id", "external_id"],
        ["customer_id", "ordered_at", "amount", "currency", "status"],
        params,
    )
    lines_written = _upsert(
        cursor,
        "customers_orderitem",
        ["tenant_id", "order_id", "line_no", "product_id", "quantity", "unit_price", "amount"],
        f"SELECT %(tenant)s, o.id, l.line_no, p.id, l.quantity, l.unit_price, l.amount FROM ("
        f"  SELECT order_id, row_number() OVER (PARTITION BY order_id ORDER BY row_no) AS line_no, sku,"
        f"  COALESCE(quantity, 1) AS quantity, unit_price, amount FROM {STAGING}) l "
        f"JOIN customers_order o ON o.tenant_id = %(tenant)s AND o.external_id = l.order_id "
        f"LEFT JOIN customers_product p ON p.tenant_id = %(tenant)s AND p.sku = l.sku WHERE true",
        ["order_id", "line_no"],
        ["product_id", "quantity", "unit_price", "amount"],
        params,
    )
    # Lines beyond those in the file belonged to an earlier version of the order.
    cursor.execute(
        f"DELETE FROM customers_orderitem WHERE tenant_id = %(tenant)s AND EXISTS ("
        f"  SELECT 1 FROM customers_order o JOIN (SELECT order_id, count(*) AS n FROM {STAGING} GROUP BY order_id) g"
        f"  ON o.external_id = g.order_id WHERE o.tenant_id = %(tenant)s AND o.id = customers_orderitem.order_id"
        f"  AND customers_orderitem.line_no > g.n)",
        params,
    )
    refresh_customer_aggregates(
        cursor,
        tenant,
        f"(c.external_id IN (SELECT DISTINCT customer_id FROM {STAGING}) OR c.id IN (SELECT id FROM {STAGING}_touched))",
        params,
    )
    return ImportResult(
        "orders",
        True,
        rows=total,
        created=new,
        updated=written - new,
        unchanged=total - written,
        details={"new_customers": new_customers, "new_products": new_products, "order_lines_written": lines_written},
    )


def _load_reviews(cursor: Any, spec: Spec, params: dict[str, Any], present: set[str]) -> ImportResult:
    tenant = params["tenant"]
    new_customers = _ensure_customers(cursor, params, "created_at")
    new_products = _ensure_products(cursor, params, "product_name", None)
    total, new = _count_new(cursor, "customers_review", "external_id", tenant, spec)
    written = _upsert(
        cursor,
        "customers_review",
        ["tenant_id", "external_id", "customer_id", "product_id", "rating", "text", "created_at", "updated_at"],
        f"SELECT %(tenant)s, s.review_id, c.id, p.id, s.rating, s.text, s.created_at, %(now)s FROM {STAGING} s "
        f"JOIN customers_customer c ON c.tenant_id = %(tenant)s AND c.external_id = s.customer_id "
        f"LEFT JOIN customers_product p ON p.tenant_id = %(tenant)s AND p.sku = s.sku "
        f"WHERE s.row_no IN (SELECT min(row_no) FROM {STAGING} GROUP BY review_id)",
        ["tenant_id", "external_id"],
        ["customer_id", "product_id", "rating", "text", "created_at"],
        params,
    )
    refresh_customer_aggregates(cursor, tenant, f"c.external_id IN (SELECT DISTINCT customer_id FROM {STAGING})", params)
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


def _present_columns(spec: Spec, header: list[str]) -> set[str]:
    present = set(header)
    if spec.kind == "customers" and present - {c.name for c in spec.columns}:
        present.add("attributes")
    return present


def _load(tenant: Tenant, spec: Spec, clean: _ValidatedFile, present: set[str], progress: ProgressCallback | None) -> ImportResult:
    params = {"tenant": tenant.pk, "now": timezone.now(), "currency": tenant.currency}
    if connection.vendor == "sqlite":
        params["now"] = params["now"].replace(tzinfo=None).isoformat(" ")
    if progress:
        # Reported before the transaction opens, so that the job row is not locked by it.
        progress(0.65, "Writing to the database")
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One import per tenant at a time: concurrent imports of the same file then end
            # exactly as one import does, with no deadlock between their upserts.
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [7301, tenant.pk])
            cursor.execute("SET LOCAL enable_nestloop = off")
        _create_staging(cursor, spec, clean)
        duplicates = _duplicate_errors(cursor, spec)
        if duplicates:
            transaction.set_rollback(True)
            collector = _Collector(settings.IMPORT_MAX_REPORTED_ERRORS)
            for error in duplicates:
                collector.add(error.row, error.column, error.message)
            raise collector.fail("file")
        result = LOADERS[spec.kind](cursor, spec, params, present)
        cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
        cursor.execute(f"DROP TABLE IF EXISTS {STAGING}_touched")
    return result


def _finish(result: ImportResult) -> ImportResult:
    result.message = (
        f"Imported {result.rows:,} {result.kind}: {result.created:,} new, {result.updated:,} updated, {result.unchanged:,} unchanged."
    )
    return result


def _failed(kind: str, exc: ImportError_) -> ImportResult:
    return ImportResult(kind, False, errors=exc.errors, error_count=exc.error_count or len(exc.errors), message=exc.message)


def import_csv(tenant: Tenant, kind: str, path: str, *, progress: ProgressCallback | None = None) -> ImportResult:
    """Import a CSV file of ``kind`` for ``tenant``: all rows or none."""
    spec = _spec(kind)
    try:
        clean = validate_file(spec, path, progress=progress)
        try:
            result = _load(tenant, spec, clean, _present_columns(spec, clean.header), progress)
        finally:
            clean.close()
    except ImportError_ as exc:
        return _failed(kind, exc)
    if progress:
        progress(1.0, "Done")
    return _finish(result)


def import_rows(tenant: Tenant, kind: str, rows: list[dict[str, Any]]) -> ImportResult:
    """Import JSON rows of ``kind`` for ``tenant`` (the REST bulk upsert): all rows or none."""
    spec = _spec(kind)
    try:
        clean = validate_rows(spec, rows)
        try:
            result = _load(tenant, spec, clean, _present_columns(spec, clean.header), None)
        finally:
            clean.close()
    except ImportError_ as exc:
        return _failed(kind, exc)
    return _finish(result)


def _spec(kind: str) -> Spec:
    if kind not in SPECS:
        raise ValueError(f"Unknown import kind {kind!r}; expected one of {', '.join(KINDS)}")
    return SPECS[kind]
