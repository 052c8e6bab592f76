"""Search that ignores accents and case: "bruckner" finds "Brückner", "muller" finds "Müller".

``name__uicontains="…"`` is ``icontains`` with both sides passed through ``UNACCENT``:
PostgreSQL's unaccent extension (created by migration customers 0008), or on SQLite the
Python function below, registered on every new connection. The search box of the customer
list and the API's ``?search=`` use it."""

from __future__ import annotations

import unicodedata
from typing import Any

from django.db.models import CharField, Lookup
from django.db.models.lookups import IContains

# Letters that Unicode does not decompose into a base letter plus accent, spelt as
# PostgreSQL's unaccent.rules spells them, so that both databases match alike.
NOT_DECOMPOSED = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                                "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "TH", "ı": "i"})


def nfc(text: str) -> str:
    """Text in the one Unicode form the app stores and compares it in (NFC): "José" typed with
    a composed é or with e and a combining accent is one id, one name. ASCII is left as it is."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def unaccent(text: str | None) -> str | None:
    if text is None:
        return None
    decomposed = unicodedata.normalize("NFKD", text.translate(NOT_DECOMPOSED))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class UnaccentContains(Lookup):
    lookup_name = "uicontains"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not has_unaccent(connection):  # a database without the extension: plain icontains
            return IContains(self.lhs, self.rhs).as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        # The term's wildcards are escaped after UNACCENT, which maps "％" to "%" and "＿" to "_".
        escaped = r"REPLACE(REPLACE(REPLACE(UPPER(UNACCENT(%s)), '\', '\\'), '%%', '\%%'), '_', '\_')"
        return f"UPPER(UNACCENT({lhs})) LIKE '%%' || {escaped} || '%%' ESCAPE '\\'", [*lhs_params, str(self.rhs)]


def has_unaccent(connection: Any) -> bool:
    """Whether the database has an UNACCENT function (asked once per connection): SQLite always
    (registered below); PostgreSQL when migration customers 0008 could create the extension."""
    if connection.vendor != "postgresql":
        return True
    if getattr(connection, "clm_has_unaccent", None) is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regprocedure('unaccent(text)') IS NOT NULL")
            connection.clm_has_unaccent = bool(cursor.fetchone()[0])
    return connection.clm_has_unaccent


def register_sqlite_unaccent(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function("UNACCENT", 1, unaccent, deterministic=True)


def register() -> None:
    from django.db.backends.signals import connection_created

    CharField.register_lookup(UnaccentContains)  # EmailField, SlugField… inherit it
    connection_created.connect(register_sqlite_unaccent, dispatch_uid="clm-sqlite-unaccent")
