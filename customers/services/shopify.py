"""Shopify's orders and customers exports (Admin → Orders or Customers → Export, "CSV for
Excel, Numbers, or other spreadsheet programs"), read as orders and customers files, so that
a Shopify merchant uploads the files the shop gives them instead of renaming their columns.
Both name a customer by their email, in lower case, as ``customer_id``: the orders export
names them by nothing else, so the customers export must too, or one person would be two
customers (the customers export's numeric Customer ID is kept as an attribute).

**Orders.** The export writes one row per line item. The order's own fields (Email, Created at,
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
  product, and what the customer bought, are still known; a new product's ``category`` is
  the line's Vendor (the export has no product type), so that segments and profiles can
  say what kind of thing a customer buys.

An order without an email (a guest or point-of-sale checkout with none given) belongs to
no customer the app can follow: it is left out, and the import's message counts them.

**Customers.** Each row with an email is a customer: ``name`` is First Name and Last Name,
``country`` the (Default Address) Country Code, and the consent to marketing, the tags and
Shopify's Customer ID are kept as attributes (``accepts_email_marketing``,
``accepts_sms_marketing``, ``tags``, ``shopify_customer_id``). Addresses, phones and Shopify's
own totals are not read (the app counts orders and spend from the orders themselves), and
the message lists them as ignored. A customer without an email is left out and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from customers.services.parsing import FieldError, parse_currency, parse_datetime, parse_email, parse_money, parse_status

# Each export's columns that tell it apart from any other file (lower case, as the import reads a header).
ORDERS_SIGNATURE = {"name", "email", "created at", "total", "lineitem quantity", "lineitem price"}
CUSTOMERS_SIGNATURE = {"first name", "last name", "email", "total spent", "total orders"}
# Our orders column → the export's column it comes from: a row error is named by the export's.
ORDERS_SOURCE_OF = {"customer_id": "Email", "order_id": "Name", "ordered_at": "Created at", "amount": "Total", "currency": "Currency",
                    "quantity": "Lineitem quantity", "sku": "Lineitem sku", "product_name": "Lineitem name", "status": "Financial Status",
                    "category": "Vendor"}
ORDER_FIELDS = ("email", "created at", "currency", "financial status", "total", "cancelled at", "refunded amount")
STATUSES = {"expired": "voided"}  # a payment that expired never became a sale
# What a line that only carries a bad order field is read with: the line that holds it names it.
STAND_IN = {"customer_id": "stand-in", "ordered_at": "2000-01-01", "currency": "", "status": ""}
CENT = Decimal("0.01")
SKU_MAX_LENGTH = 128  # imports.ID: a line without a sku (many shops set none) is its product's title
# A customer's attributes kept from the customers export: attribute → the export's columns
# that may hold it (older exports say "Accepts Marketing", newer "Accepts Email Marketing").
CUSTOMER_ATTRIBUTES = {"shopify_customer_id": ("customer id",), "accepts_email_marketing": ("accepts email marketing", "accepts marketing"),
                       "accepts_sms_marketing": ("accepts sms marketing",), "tags": ("tags",)}
COUNTRY_COLUMNS = ("default address country code", "country code")
SAME_PERSON_NAMED = 5  # Shopify customers under several emails that a customers import's message names


def export_of(header: list[str], *, decimal_comma: bool = False) -> OrdersExport | CustomersExport | None:
    """The Shopify export a header is the header of, ready to read its rows; or None."""
    names = {name.strip().lower() for name in header}
    if names >= ORDERS_SIGNATURE:
        return OrdersExport(header, decimal_comma=decimal_comma)
    if names >= CUSTOMERS_SIGNATURE:
        return CustomersExport(header)
    return None


def spread(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """``total`` in cents over the lines by ``weights`` (equal shares when they are all 0); the
    last line takes what rounding leaves, so that the lines add up to the total exactly."""
    whole = sum(weights)
    shares = [weight / whole for weight in weights] if whole > 0 else [Decimal(1) / len(weights)] * len(weights)
    amounts = [(total * share).quantize(CENT, ROUND_HALF_UP) for share in shares[:-1]]
    return [*amounts, total - sum(amounts, Decimal(0))]


@dataclass
class Export:
    """An export's records read as rows of one of the app's formats (``columns``). Cells it
    finds bad itself go into ``refused`` (row → the export's column → message) before their
    row is yielded, where the import reports them with its own findings; ``source_of`` names
    the export's column behind each of ours, so that every error is named by the export's."""

    header: list[str]
    decimal_comma: bool = False  # a file separated by semicolons writes 1.234,56 (see imports.validate_file)
    kind = ""
    left_out = 0  # orders or customers without an email

    def __post_init__(self) -> None:
        self.at: dict[str, int] = {}
        for index, name in enumerate(self.header):
            self.at.setdefault(name.strip().lower(), index)
        self.refused: dict[int, dict[str, str]] = {}
        self.source_of: dict[str, str] = {}
        self.columns: list[str] = []
        self.unread: list[str] = []  # the export's columns the import does not read

    def cell(self, values: list[str], name: str) -> str:
        index = self.at.get(name)
        return values[index].strip() if index is not None and index < len(values) else ""

    def misshapen(self, row_no: int, values: list[str]) -> tuple[int, list[str]] | None:
        """A row of another width than the header's, refused as the import refuses one (the
        rows it is read as have their own width); or None."""
        if len(values) == len(self.header):
            return None
        return self.reject(row_no, "", f"has {len(values)} field{'s' if len(values) != 1 else ''} but the header has {len(self.header)}")

    def named(self, exc: Any) -> Any:
        """An import's error with each bad cell named by the export's column, not ours."""
        for error in getattr(exc, "errors", []):
            error.column = self.source_of.get(error.column, error.column)
        return exc

    def reject(self, row_no: int, column: str, message: str) -> tuple[int, list[str]]:
        """A row refused as a whole, with ``message`` under ``column``."""
        self.refused.setdefault(row_no, {})[column] = message
        return row_no, ["rejected"]  # a width the import does not read, so it names the row by ``refused`` alone

    def ignored(self, read: set[str]) -> list[str]:
        """The export's columns not among ``read`` (lower case), as the header names them."""
        return [name.strip() for name in self.header if name.strip() and name.strip().lower() not in read]


class OrdersExport(Export):
    """One order at a time: its lines, with the order's own fields of its first line."""

    kind = "orders"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.seen: dict[str, tuple[int, int]] = {}  # each order's Name → its first row and its lines' fingerprint
        self.repeated = 0  # orders whose lines the file repeats, cell for cell, further down
        self.source_of = ORDERS_SOURCE_OF
        self.columns = list(ORDERS_SOURCE_OF)
        self.unread = self.ignored({*ORDERS_SIGNATURE, *ORDER_FIELDS, "lineitem sku", "lineitem name", "vendor"})

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
        misshapen = [refused for row_no, values in group if (refused := self.misshapen(row_no, values))]
        if misshapen:
            yield from misshapen
            return
        name, first_row = self.cell(group[0][1], "name"), group[0][0]
        # An order's lines come one after another. Its Name again further down is the same lines
        # pasted twice (two overlapping exports), read once; or a file sorted by another column,
        # which split orders apart and left their later lines without the order's own fields.
        fingerprint = hash(tuple(tuple(values) for _, values in group))
        starts = [row_no for row_no, values in group if self.cell(values, "email") or self.cell(values, "created at")]  # lines with the order's own fields
        if name in self.seen:
            earlier, earlier_print = self.seen[name]
            if earlier_print == fingerprint:
                self.repeated += 1
                return
            if starts and starts[0] == first_row:  # a whole second copy, changed in between: two exports of different days
                message = (f"order {name} is in the file twice, at rows {earlier} and {first_row}, with other lines or fields: two exports from "
                           "different days pasted together? Keep each order once, from the newer export, and import it")
            else:
                message = (f"order {name} has lines at row {earlier} too: the export lists an order's lines one after another, so sort the file "
                           "by Name (or export it again) and import it")
            yield from (self.reject(row_no, "Name", message) for row_no, _ in group)
            return
        self.seen[name] = (first_row, fingerprint)
        # The export writes the order's own fields on its first line only (some tools on every
        # line): on a few lines but not all, or differing, they start a second copy of the order.
        copies = len(starts) > 1 and len(starts) < len(group)
        differing = [field for field in ORDER_FIELDS if len({self.cell(values, field) for _, values in group} - {""}) > 1]
        if copies or differing:
            what = f"its {', '.join(differing)} {'differ' if len(differing) > 1 else 'differs'} between its lines" if differing else f"its own fields start it again at row {starts[1]}"
            message = (f"order {name} is in the file twice ({what}): two exports pasted together and sorted? Keep each order once, from the newer "
                       "export, and import it")
            yield from (self.reject(row_no, "Name", message) for row_no, _ in group)
            return
        # The order's own fields, from the first line that has each: problems are named on that
        # line, and the lines that only carry them get a stand-in, so each problem is named once.
        held = {field: next(((row_no, self.cell(values, field)) for row_no, values in group if self.cell(values, field)), (first_row, ""))
                for field in ORDER_FIELDS}
        if not held["email"][1]:
            self.left_out += 1
            return
        own: dict[str, str] = {}
        bad: set[str] = set()
        for ours, field, parse in (("customer_id", "email", parse_email), ("ordered_at", "created at", parse_datetime), ("currency", "currency", parse_currency)):
            row_no, text = held[field]
            own[ours] = text.lower() if ours == "customer_id" else text
            if text and not self.check(row_no, ours, text, parse):
                bad.add(ours)
        status = "cancelled" if held["cancelled at"][1] else STATUSES.get(held["financial status"][1].lower(), held["financial status"][1])
        own["status"] = status
        if status and not self.check(held["financial status"][0], "status", status, parse_status):
            bad.add("status")
        weights = []
        for row_no, values in group:
            quantity, price = self.cell(values, "lineitem quantity") or "1", self.cell(values, "lineitem price")
            each = self.money(row_no, "Lineitem price", price) if price else Decimal(0)
            weights.append(each * int(quantity) if each is not None and quantity.isdigit() else Decimal(0))  # a bad quantity: the import names it
        total_row, total_text = held["total"]
        total = self.money(total_row, "amount", total_text) if total_text else None
        if not total_text:
            self.refused.setdefault(total_row, {})["amount"] = "is required: the export writes each order's Total on its first line"
        refunded_row, refunded_text = held["refunded amount"]
        if total is not None and status.lower() == "partially_refunded" and refunded_text:
            refunded = self.money(refunded_row, "Refunded Amount", refunded_text)
            if refunded is not None and refunded > total:
                self.refused.setdefault(refunded_row, {})["Refunded Amount"] = f"{refunded} is more than the order's Total, {total}"
            elif refunded is not None:
                total -= refunded
        for (row_no, values), amount in zip(group, spread(total or Decimal(0), weights), strict=True):
            title = self.cell(values, "lineitem name")
            sku = self.cell(values, "lineitem sku") or (title if len(title) <= SKU_MAX_LENGTH else "")
            # A line that only carries a bad order field gets a stand-in: the line that holds it names it.
            cells = {ours: (STAND_IN[ours] if ours in bad and held_row != row_no else own[ours])
                     for ours, held_row in (("customer_id", held["email"][0]), ("ordered_at", held["created at"][0]),
                                            ("currency", held["currency"][0]), ("status", held["financial status"][0]))}
            if not own["ordered_at"] and row_no != held["created at"][0]:
                cells["ordered_at"] = STAND_IN["ordered_at"]  # a blank Created at is named once, on the order's first line
            yield row_no, [cells["customer_id"], name, cells["ordered_at"], str(amount), cells["currency"],
                           self.cell(values, "lineitem quantity"), sku, title, cells["status"], self.cell(values, "vendor")]

    def check(self, row_no: int, column: str, text: str, parse: Callable[[str], object]) -> bool:
        """Whether ``text`` reads; if not, the cell is refused under ``column`` (ours: the import
        names it by the export's)."""
        try:
            parse(text)
        except FieldError as exc:
            self.refused.setdefault(row_no, {})[column] = str(exc)
            return False
        return True

    def note(self) -> str:
        """What the import's message adds: how the file was read, and the orders left out."""
        said = ("Read as a Shopify orders export: each Name is an order, its Email the customer, "
                "and its Total is spread over its lines by their price × quantity.")
        if self.left_out:
            said += (f" {self.left_out:,} order{'s' if self.left_out != 1 else ''} without an email (guest or point-of-sale checkouts) "
                     f"{'were' if self.left_out != 1 else 'was'} left out: the export names a customer by their email only.")
        if self.repeated:
            said += (f" {self.repeated:,} order{'s' if self.repeated != 1 else ''} appeared twice in the file, line for line "
                     "(two exports pasted together?): each was read once.")
        return said


class CustomersExport(Export):
    """One customer a row, named by their email as the orders export names them."""

    kind = "customers"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.country = next((name for name in COUNTRY_COLUMNS if name in self.at), "")
        self.attributes = {attribute: next(name for name in names if name in self.at)
                           for attribute, names in CUSTOMER_ATTRIBUTES.items() if any(name in self.at for name in names)}
        self.source_of = {"customer_id": "Email", "email": "Email", "name": "First Name", "country": self.header[self.at[self.country]].strip() if self.country else "",
                          **{attribute: self.header[self.at[name]].strip() for attribute, name in self.attributes.items()}}
        self.columns = ["customer_id", "email", "name", *(["country"] if self.country else []), *self.attributes]
        self.unread = self.ignored({"email", "first name", "last name", self.country, *self.attributes.values()})
        self.shopify_ids: set[str] = set()  # the file's Customer IDs
        self.same_person: dict[str, list[str]] = {}  # after the import: Customer ID → its emails, where several

    def records(self, records: Iterable[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
        for row_no, values in records:
            if refused := self.misshapen(row_no, values):
                yield refused
                continue
            email = self.cell(values, "email")
            if not email:
                self.left_out += 1
                continue
            name = " ".join(part for part in (self.cell(values, "first name"), self.cell(values, "last name")) if part)
            self.shopify_ids.add(self.cell(values, "customer id").removeprefix("'"))
            # Shopify writes its numeric id behind an apostrophe, so that a spreadsheet keeps its digits.
            yield row_no, [email.lower(), email, name, *([self.cell(values, self.country)] if self.country else []),
                           *(self.cell(values, column).removeprefix("'") for column in self.attributes.values())]

    def under_two_emails(self, tenant: Any) -> None:
        """After an import: the file's Shopify customers that the shop now has under two emails
        or more (an email changed between exports), for the message. Grouped here, not in SQL:
        SQLite reads the id ``'7011…'`` out of the JSON as a number, PostgreSQL as text."""
        from clmsite.tenancy import tenant_context
        from customers.models import Customer

        emails: dict[str, list[str]] = {}
        with tenant_context(tenant):
            stored = Customer.objects.filter(attributes__has_key="shopify_customer_id").order_by("external_id").values_list("external_id", "attributes")
            for external_id, attributes in stored.iterator():
                shopify_id = str(attributes.get("shopify_customer_id", ""))
                if shopify_id in self.shopify_ids:
                    emails.setdefault(shopify_id, []).append(external_id)
        self.same_person = dict(sorted((key, found) for key, found in emails.items() if len(found) > 1)[:SAME_PERSON_NAMED])

    def note(self) -> str:
        said = "Read as a Shopify customers export: each customer is named by their email, as the orders export names them."
        if self.same_person:
            named = "; ".join(f"{shopify_id}: {', '.join(emails)}" for shopify_id, emails in self.same_person.items())
            said += (f" {len(self.same_person):,} Shopify customer{'s are' if len(self.same_person) != 1 else ' is'} here under two emails or more "
                     f"(an email changed?), each a customer of its own, with the orders placed under it: {named}.")
        if self.left_out:
            said += (f" {self.left_out:,} customer{'s' if self.left_out != 1 else ''} without an email {'were' if self.left_out != 1 else 'was'} left out: "
                     "their orders could not be told apart from anyone's.")
        return said

