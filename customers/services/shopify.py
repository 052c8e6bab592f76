"""Shopify's orders export (Admin → Orders → Export, "CSV for Excel, Numbers, or other
spreadsheet programs"), read as an orders file, so that a Shopify merchant uploads the file
the shop gives them instead of renaming its columns.

The export writes one row per line item. The order's own fields (Email, Created at,
Currency, Financial Status, Total, Cancelled at, Refunded Amount) are on its first row and
blank on the rows after it, which share its Name (#1001). Each order becomes:

- ``order_id``: its Name; ``customer_id``: its Email, in lower case (the export names a
  customer by nothing else), which also becomes the email of a customer it creates;
- ``ordered_at``: Created at (``2025-10-07 09:50:26 +0200``);
- ``amount``: the order's Total (what the customer paid: lines after discounts, shipping and
  taxes), less its Refunded Amount when partially refunded, spread over its lines in
  proportion to each line's Lineitem price × quantity, to the cent, so that the order's
  amount is its Total;
- ``status``: cancelled when Cancelled at is set, else the Financial Status (an expired
  payment is voided);
- each line's ``quantity``, ``sku`` and ``product_name`` from Lineitem quantity, sku and name;
  a line without a sku (many shops set none) takes its name as its sku, so that its
  product, and what the customer bought, are still known.

An order without an email (a guest or point-of-sale checkout with none given) belongs to
no customer the app can follow: it is left out, and the import's message counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from customers.services.parsing import FieldError, parse_money, shorten

# The export's columns that tell it apart from any other file (lower case, as the import reads a header).
SIGNATURE = {"name", "email", "created at", "total", "lineitem quantity", "lineitem price"}
# Our orders column → the export's column it comes from: a row error is named by the export's.
SOURCE_OF = {"customer_id": "Email", "order_id": "Name", "ordered_at": "Created at", "amount": "Total", "currency": "Currency",
             "quantity": "Lineitem quantity", "sku": "Lineitem sku", "product_name": "Lineitem name", "status": "Financial Status"}
COLUMNS = list(SOURCE_OF)  # the header the rows are read under
ORDER_FIELDS = ("email", "created at", "currency", "financial status", "total", "cancelled at", "refunded amount")
STATUSES = {"expired": "voided"}  # a payment that expired never became a sale
CENT = Decimal("0.01")
SKU_MAX_LENGTH = 128  # imports.ID: a line without a sku (many shops set none) is its product's title


def is_orders_export(header: Iterable[str]) -> bool:
    return {name.strip().lower() for name in header} >= SIGNATURE


def spread(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """``total`` in cents over the lines by ``weights`` (equal shares when they are all 0); the
    last line takes what rounding leaves, so that the lines add up to the total exactly."""
    whole = sum(weights)
    shares = [weight / whole for weight in weights] if whole > 0 else [Decimal(1) / len(weights)] * len(weights)
    amounts = [(total * share).quantize(CENT, ROUND_HALF_UP) for share in shares[:-1]]
    return [*amounts, total - sum(amounts, Decimal(0))]


@dataclass
class OrdersExport:
    """Turns the export's records into rows of the orders format (``COLUMNS``), one order at
    a time. Cells it finds bad itself (a Total or a line's price or quantity it cannot read)
    go into ``refused`` (row → the export's column → message) before their row is yielded,
    where the import reports them with its own findings."""

    header: list[str]
    decimal_comma: bool = False  # a file separated by semicolons writes 1.234,56 (see imports.validate_file)
    guest_orders: int = 0

    def __post_init__(self) -> None:
        names = [name.strip().lower() for name in self.header]
        self.at = {name: names.index(name) for name in {*SIGNATURE, *ORDER_FIELDS, "lineitem sku", "lineitem name", "financial status"} if name in names}
        self.refused: dict[int, dict[str, str]] = {}

    def cell(self, values: list[str], name: str) -> str:
        index = self.at.get(name)
        return values[index].strip() if index is not None and index < len(values) else ""

    def money(self, row_no: int, column: str, text: str) -> Decimal | None:
        """The amount in a cell, or None with the cell refused."""
        try:
            return parse_money(text, decimal_comma=self.decimal_comma)
        except FieldError as exc:
            self.refused.setdefault(row_no, {})[column] = str(exc)
            return None

    def records(self, records: Iterable[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
        group: list[tuple[int, list[str]]] = []
        for row_no, values in records:
            if group and self.cell(values, "name") != self.cell(group[0][1], "name"):
                yield from self.order(group)
                group = []
            group.append((row_no, values))
        if group:
            yield from self.order(group)

    def order(self, group: list[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
        width = len(self.header)
        if any(len(values) != width for _, values in group):  # the import names a row of the wrong width
            yield from ((row_no, values) for row_no, values in group)
            return
        own = {name: next((self.cell(values, name) for _, values in group if self.cell(values, name)), "") for name in ORDER_FIELDS}
        if not own["email"]:
            self.guest_orders += 1
            return
        first_row = group[0][0]
        weights = []
        for row_no, values in group:
            quantity, price = self.cell(values, "lineitem quantity") or "1", self.cell(values, "lineitem price")
            each = self.money(row_no, "Lineitem price", price) if price else Decimal(0)
            if not quantity.isdigit():
                self.refused.setdefault(row_no, {})["Lineitem quantity"] = f"'{shorten(quantity)}' is not a whole number"
            weights.append(each * int(quantity) if each is not None and quantity.isdigit() else Decimal(0))
        total = self.money(first_row, "Total", own["total"]) if own["total"] else sum(weights, Decimal(0))
        status = "cancelled" if own["cancelled at"] else STATUSES.get(own["financial status"].lower(), own["financial status"])
        if total is None:
            total = Decimal(0)  # the row is refused: it is not staged
        if status.lower() == "partially_refunded" and own["refunded amount"] and (refunded := self.money(first_row, "Refunded Amount", own["refunded amount"])):
            total = max(total - refunded, Decimal(0))
        for (row_no, values), amount in zip(group, spread(total, weights), strict=True):
            title = self.cell(values, "lineitem name")
            sku = self.cell(values, "lineitem sku") or (title if len(title) <= SKU_MAX_LENGTH else "")
            yield row_no, [own["email"].lower(), self.cell(values, "name"), own["created at"], str(amount), own["currency"],
                           self.cell(values, "lineitem quantity"), sku, title, status]

    def note(self) -> str:
        """What the import's message adds: how the file was read, and the orders left out."""
        said = ("Read as a Shopify orders export: each Name is an order, its Email the customer, "
                "and its Total is spread over its lines by their price × quantity.")
        if self.guest_orders:
            said += (f" {self.guest_orders:,} order{'s' if self.guest_orders != 1 else ''} without an email (guest or point-of-sale checkouts) "
                     f"{'were' if self.guest_orders != 1 else 'was'} left out: the export names a customer by their email only.")
        return said
