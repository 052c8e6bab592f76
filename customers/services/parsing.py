"""Field parsers for imported rows. Each takes the raw text and returns a clean value or
raises :class:`FieldError` with a message a merchant can act on."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
import unicodedata
from decimal import Decimal, InvalidOperation

import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Q

from customers.models import Order

UTC = dt.UTC
MAX_MONEY = Decimal("1e11")
CENT = Decimal("0.01")
_YYYYMMDD = re.compile(r"^\d{8}$")
_LOCAL_DATE = re.compile(r"^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")  # 30.11.2026, 11/30/26, 30-11-2026
_DECIMAL_COMMA = re.compile(r"-?\d{1,3}(?:\.\d{3})*,\d{1,2}|-?\d+,\d{1,2}")  # 19,99 or 1.234,50
# A plain decimal number (ASCII digits, no exponent), commas only as thousands separators
# in groups of three and only beside a decimal point: "1,000" alone could be a decimal
# comma's 1.000, so it is refused rather than read as a thousand.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+|[1-9][0-9]{0,2}(?:,[0-9]{3})+\.[0-9]*)")
_GROUPED_INTEGER = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+")
# The same two rules with the marks swapped, for files whose amounts have a decimal comma
# (19,99 or 1.234,56): dots only group thousands in threes, beside a decimal comma.
_COMMA_DECIMAL_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:,[0-9]*)?|,[0-9]+|[1-9][0-9]{0,2}(?:\.[0-9]{3})+,[0-9]*)")
_DOT_GROUPED_INTEGER = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:\.[0-9]{3})+")
_SCIENTIFIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+")  # 1e3, 1.5E-02: a spreadsheet's large or small numbers
# ISO 4217 currencies in circulation (and the few just replaced: SLL, ZWL, ANG).
CURRENCIES = frozenset(["AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL"])


_SERIAL_DATE = re.compile(r"\d{5}(?:\.\d+)?")


class FieldError(ValueError):
    pass


# How far past now (UTC) an event's time may lie: a shop east of Greenwich is already there.
FUTURE_SLACK = dt.timedelta(days=1)


def parse_datetime(raw: str, *, zone: dt.tzinfo | None = None) -> dt.datetime:
    """ISO 8601 (date or date-time, with or without offset) or ``YYYYMMDD``, in UTC. Without
    an offset it is the shop's time (``zone``; UTC when None): a date alone is the start of
    the shop's day, so that 2025-10-28 stays the 28th on every page of a shop in Los Angeles.

    Every imported time records something that happened (an order, a review, a first
    visit), so a time more than a day ahead is refused: a typo'd year would otherwise make
    a customer look active for years and sit in every later model's features."""
    text = raw.strip()
    try:
        if _YYYYMMDD.match(text):
            value = dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), tzinfo=zone or UTC)
        else:
            value = dt.datetime.fromisoformat(text[:-1] + "Z" if text.endswith("z") else text)  # RFC 3339 allows a lower-case z
    except ValueError:
        # A spreadsheet that opened the file rewrote its dates in the local style (30.11.2026 18:20, 11/30/2026):
        # say so, as every date of the file then fails alike.
        rewritten = ("; a spreadsheet may have rewritten the dates in its local style: export the file again and import it without opening it "
                     "in a spreadsheet (or format the column as 2026-11-30 18:20, adding the times' UTC offset if they had one)") if _LOCAL_DATE.match(text) else ""
        if _SERIAL_DATE.fullmatch(text) and 20_000 <= float(text) <= 80_000:  # Excel's day count from 1899-12-30
            day = dt.datetime(1899, 12, 30, tzinfo=UTC) + dt.timedelta(days=float(text))
            rewritten = (f"; it looks like a spreadsheet's date number ({text} is {day:%Y-%m-%d %H:%M}): format the column as dates "
                         "(2026-11-30 18:20) in the spreadsheet, save it as CSV again and import it")
        raise FieldError(f"'{shorten(raw)}' is not a date; use ISO 8601 (2024-03-31 or 2024-03-31T14:05:00Z) or YYYYMMDD{rewritten}") from None
    if value.tzinfo is None:
        wall = value
        value = value.replace(tzinfo=zone or UTC)
        if len(text) > 10 and value.astimezone(UTC).astimezone(value.tzinfo).replace(tzinfo=None) != wall:
            # 02:30 on the night the clocks go forward: no such time there (zoneinfo would move it an hour silently).
            raise FieldError(f"{wall:%Y-%m-%d %H:%M} does not exist in {zone}: the clocks went forward that night. Give the time with its UTC offset "
                             f"(such as {text}{value.strftime('%z')[:3]}:{value.strftime('%z')[3:]})")
    if not 1900 <= value.year <= 2100:
        raise FieldError(f"year {value.year} is out of range (1900-2100)")
    value = value.astimezone(UTC)
    latest = dt.datetime.now(UTC) + FUTURE_SLACK
    if value > latest:
        clock, named = (zone, "") if zone is not None else (UTC, " UTC")  # on the clock the file's times are read on
        raise FieldError(f"{value.astimezone(clock):%Y-%m-%d %H:%M}{named} is in the future; times may be at most a day ahead "
                         f"({latest.astimezone(clock):%Y-%m-%d %H:%M}{named})")
    return value


def parse_money(raw: str, *, allow_negative: bool = False, hint: str = "", decimal_comma: bool = False) -> Decimal:
    """A plain decimal number to the cent. With ``decimal_comma`` (a file separated by
    semicolons, as spreadsheets save CSV where the decimal mark is a comma) the comma is
    the decimal mark and dots group thousands (1.234,56); a dot followed by other than
    three digits is still a decimal point (19.99)."""
    text = raw.strip()
    value = Decimal(_as_dot_decimal(text, decimal_comma))
    if abs(value) >= MAX_MONEY:
        raise FieldError(f"{shorten(raw)} is too large")
    if value < 0 and not allow_negative:
        raise FieldError(f"must not be negative{hint}")
    if value != value.quantize(CENT):
        raise FieldError(f"'{shorten(raw)}' has more than two decimal places; amounts are kept to the cent, so round it")
    return value.quantize(CENT)


def _as_dot_decimal(text: str, decimal_comma: bool) -> str:
    """``text`` as a number Decimal reads (a dot for decimals, no grouping), or FieldError."""
    if not decimal_comma:
        if not _PLAIN_NUMBER.fullmatch(text):
            raise FieldError(_not_plain_money(text))
        return text.replace(",", "")
    # 1.234 and 1,234 are a thousand and more if the mark groups, one and a bit if it is a
    # decimal mark (an export with three decimals): a factor of a thousand apart, so they are
    # refused, not guessed. Any other mark followed by other than three digits says what it is.
    if _DOT_GROUPED_INTEGER.fullmatch(text) or _GROUPED_INTEGER.fullmatch(text):
        raise FieldError(_not_plain_money(text, decimal_comma=True))
    if _COMMA_DECIMAL_NUMBER.fullmatch(text):  # 19,99 or 1.234,56
        return text.replace(".", "").replace(",", ".")
    if _PLAIN_NUMBER.fullmatch(text):  # 19.99, or 1,234.56 as a file separated by commas writes it
        return text.replace(",", "")
    raise FieldError(_not_plain_money(text, decimal_comma=True))


def _not_plain_money(text: str, *, decimal_comma: bool = False) -> str:
    """What is wrong with an amount that is not a plain decimal number (``decimal_comma``:
    in a file whose decimal mark is a comma)."""
    if decimal_comma and (_DOT_GROUPED_INTEGER.fullmatch(text) or _GROUPED_INTEGER.fullmatch(text)):
        mark = "dot" if "." in text else "comma"
        whole = text.replace(".", "").replace(",", "")
        return (f"'{shorten(text)}' is ambiguous (a {mark} before three digits may separate thousands or mark decimals, and money "
                f"has at most two decimals); write a whole amount as {whole} or {whole},00, and decimals with a comma (1234,56)")
    if not decimal_comma and _DECIMAL_COMMA.fullmatch(text):
        return f"'{shorten(text)}' has a decimal comma; write money with a dot ({text.replace('.', '').replace(',', '.')})"
    if not decimal_comma and _GROUPED_INTEGER.fullmatch(text):
        return f"'{shorten(text)}' is ambiguous (a comma may separate thousands or mark decimals); write a whole amount as {text.replace(',', '')} or {text}.00"
    number = text.replace(",", ".") if decimal_comma else text
    if _SCIENTIFIC.fullmatch(number):
        try:
            value = Decimal(number)
            plain = f"{value:f}".replace(".", "," if decimal_comma else ".")
            plain = f" ({plain})" if value.copy_abs() < MAX_MONEY and value == value.quantize(CENT) else ""
        except InvalidOperation:  # an exponent beyond Decimal's range
            plain = ""
        return f"'{shorten(text)}' is in scientific notation; write a plain decimal number{plain}"
    if "," in text:
        if decimal_comma:
            return f"'{shorten(text)}' is not a number; write amounts with a decimal comma (1234,56 or 1.234,56) or a decimal point (1234.56)"
        return f"'{shorten(text)}' has commas that are not thousands separators; group digits in threes (1,234.50) or leave the commas out"
    return f"'{shorten(text)}' is not a number"


def parse_order_amount(raw: str, *, decimal_comma: bool = False) -> Decimal:
    return parse_money(raw, hint=" (record refunds with status=refunded)", decimal_comma=decimal_comma)


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")  # 3, or 3.0 as a spreadsheet writes it


def parse_positive_int(raw: str, *, maximum: int = 1_000_000) -> int:
    text = raw.strip()
    if not _WHOLE_NUMBER.fullmatch(text):
        if _SCIENTIFIC.fullmatch(text):
            raise FieldError(f"'{shorten(raw)}' is in scientific notation; write a plain whole number")
        raise FieldError(f"'{shorten(raw)}' is not a whole number")
    value = int(Decimal(text))
    if not 1 <= value <= maximum:
        raise FieldError(f"'{shorten(raw)}' is not between 1 and {maximum:,}")
    return value


def parse_rating(raw: str) -> int:
    try:
        value = parse_positive_int(raw, maximum=5)
    except FieldError:
        raise FieldError(f"'{shorten(raw)}' is not a rating from 1 to 5") from None
    return value


def parse_currency(raw: str) -> str:
    text = raw.strip().upper()
    if text not in CURRENCIES:
        raise FieldError(f"'{shorten(raw)}' is not an ISO 4217 currency code (such as USD, EUR or GBP)")
    return text


# Spellings of a status that mean one of ours (models.Order.NOT_REVENUE): "Canceled" is
# a cancelled order, not a sale.
STATUS_SPELLINGS = {"canceled": "cancelled", "cancel": "cancelled", "refund": "refunded", "void": "voided", "fail": "failed"}
STATUS_MAX_LENGTH = 32


def one_of(words: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return ", ".join(words[:-1]) + f" or {words[-1]}"


def parse_status(raw: str) -> str:
    """An order status as the shop's platform writes it, compared without case: stored in
    lower case, with the usual spellings of the statuses that are not a sale made ours. A
    status a letter or two from one of those (``refundd``) is refused: stored as it is, it
    would count a refunded order as a sale."""
    text = parse_text(raw, max_length=STATUS_MAX_LENGTH).lower()
    status = STATUS_SPELLINGS.get(text, text)
    for meant in Order.NOT_REVENUE:
        if status != meant and meant not in status and difflib.SequenceMatcher(None, status, meant).ratio() >= 0.85:
            raise FieldError(f"'{shorten(raw)}' looks like a misspelling of {meant}; a status other than {one_of(Order.NOT_REVENUE)} counts the order as a sale")
    return status


EMAIL_MAX_LENGTH = 254  # RFC 5321's path limit, and Django's EmailField


def parse_email(raw: str) -> str:
    text = raw.strip()
    if len(text) > EMAIL_MAX_LENGTH:
        raise FieldError(f"is {len(text):,} characters long; the limit is {EMAIL_MAX_LENGTH}")
    try:
        validate_email(text)
    except ValidationError:
        local = text.rpartition("@")[0]
        if "@" in text and not local.isascii():
            # Valid under RFC 6531, but few mail systems deliver to it, nor does Django validate it.
            raise FieldError(f"'{shorten(raw)}' has letters outside ASCII before the @, which is not supported; "
                             "use the address the customer's mail provider gives in plain ASCII, or leave the cell blank") from None
        raise FieldError(f"'{shorten(raw)}' is not an email address") from None
    return text.lower()


def parse_text(raw: str, *, max_length: int, column: str = "") -> str:
    text = raw.strip()
    if len(text) > max_length:
        raise FieldError(too_long(text, max_length))
    return text


COUNTRY_MAX_LENGTH = 64


def parse_country(raw: str) -> str:
    """A country as its ISO 3166 two-letter code where the text names one ("us", "USA", "DEU",
    "United States" and "germany" are US and DE: ``pycountry``'s codes and English names), so
    that one country is one value in lists and filters; any other text as given (a code we do
    not know in capitals)."""
    text = parse_text(raw, max_length=COUNTRY_MAX_LENGTH)
    return country_code(text) or (text.upper() if len(text) <= 3 and text.isascii() and text.isalpha() else text)


def country_matches(field: str, value: str) -> Q:
    """A filter on a country as a person types it: the stored value without case, or any code or
    English name of the country the text names ("us" finds US, as an import now stores it, and
    USA or United States, as one stored before)."""
    query = Q(**{f"{field}__iexact": value.strip()})
    code = country_code(value)
    country = pycountry.countries.get(alpha_2=code) if code else None
    if country is not None:  # a code or a name: every way an older import may have stored it
        aliases = {alias for alias, aliased in COUNTRY_ALIASES.items() if aliased == code}
        for spelling in {code, country.alpha_3, country.name, getattr(country, "common_name", None), getattr(country, "official_name", None), *aliases} - {None}:
            query |= Q(**{f"{field}__iexact": spelling})
    return query


# Everyday English names and codes that ISO 3166 (and so pycountry) spells otherwise.
COUNTRY_ALIASES = {
    "uk": "GB", "u.k.": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "u.s.": "US", "u.s.a.": "US", "america": "US", "united states of america": "US", "russia": "RU", "turkey": "TR", "holland": "NL",
    "the netherlands": "NL", "ivory coast": "CI", "brunei": "BN", "south korea": "KR", "korea": "KR", "north korea": "KP", "vietnam": "VN",
    "iran": "IR", "syria": "SY", "laos": "LA", "moldova": "MD", "bolivia": "BO", "venezuela": "VE", "tanzania": "TZ", "taiwan": "TW",
    "czech republic": "CZ", "uae": "AE", "macedonia": "MK", "swaziland": "SZ", "cape verde": "CV", "the gambia": "GM", "vatican": "VA",
    # ...and the names shops' own customers write in their languages (pycountry knows English only).
    "deutschland": "DE", "österreich": "AT", "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "españa": "ES", "espana": "ES",
    "italia": "IT", "nederland": "NL", "belgië": "BE", "belgie": "BE", "belgique": "BE", "belgien": "BE", "frankreich": "FR",
    "polska": "PL", "sverige": "SE", "norge": "NO", "danmark": "DK", "suomi": "FI", "éire": "IE", "brasil": "BR", "méxico": "MX",
    "magyarország": "HU", "česko": "CZ", "česká republika": "CZ", "slovensko": "SK", "hrvatska": "HR", "slovenija": "SI", "românia": "RO",
    "ελλάδα": "GR", "россия": "RU", "україна": "UA", "türkiye": "TR", "日本": "JP", "中国": "CN", "大韩民国": "KR", "대한민국": "KR", "한국": "KR",
    "vereinigte staaten": "US", "vereinigtes königreich": "GB", "großbritannien": "GB", "estados unidos": "US", "reino unido": "GB", "états-unis": "US",
    "royaume-uni": "GB", "allemagne": "DE", "alemania": "DE", "germania": "DE", "autriche": "AT", "espagne": "ES", "italien": "IT", "spanien": "ES",
    # Names shops' platforms and customers use that ISO 3166 words otherwise.
    "turkiye": "TR", "macau": "MO", "macao": "MO", "palestine": "PS", "vatican city": "VA", "democratic republic of the congo": "CD",
    "dr congo": "CD", "drc": "CD", "congo-kinshasa": "CD", "republic of the congo": "CG", "congo-brazzaville": "CG", "republic of korea": "KR",
    "falkland islands": "FK", "cote d'ivoire": "CI", "micronesia": "FM", "east timor": "TL", "burma": "MM", "kosovo": "XK",
    "ísland": "IS", "island": "IS", "eesti": "EE", "latvija": "LV", "lietuva": "LT", "lëtzebuerg": "LU", "luxemburg": "LU", "българия": "BG",
    "srbija": "RS", "србија": "RS", "shqipëria": "AL", "türkei": "TR", "dänemark": "DK", "schweden": "SE", "norwegen": "NO", "polen": "PL",
}
# Codes in use that ISO 3166 has not assigned: Kosovo's, as Shopify, the EU and banks write it.
EXTRA_CODES = {"XK"}


@functools.lru_cache(maxsize=4096)
def country_code(text: str) -> str | None:
    """The ISO 3166 alpha-2 code of a country code (alpha-2 or alpha-3) or English name (and
    the everyday names of COUNTRY_ALIASES: UK, Russia, Turkey), or None."""
    text = text.strip()
    if not text:
        return None
    if text.upper() in EXTRA_CODES:
        return text.upper()
    # As written, then as people abbreviate (St. Lucia, Trinidad & Tobago, The Bahamas), then
    # without accents (São Tomé and Príncipe, which ISO writes Sao Tome and Principe).
    plain = re.sub(r"^the\s+", "", re.sub(r"^st\.?\s+", "saint ", text.lower().replace("&", "and").replace("’", "'")))
    plain = re.sub(r"\s+", " ", plain)
    for spelling in dict.fromkeys((text.lower(), plain, unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode())):
        if spelling in COUNTRY_ALIASES:
            return COUNTRY_ALIASES[spelling]
        try:
            return str(pycountry.countries.lookup(spelling).alpha_2)
        except LookupError:
            continue
    return None


@functools.lru_cache(maxsize=512)
def is_country_code(text: str) -> bool:
    """Whether a stored country is the ISO 3166 two-letter code of a country (what an import
    stores for every country it recognises)."""
    return len(text) == 2 and (text in EXTRA_CODES or pycountry.countries.get(alpha_2=text) is not None)


def too_long(text: str, max_length: int) -> str:
    return f"is {len(text):,} characters long; the limit is {max_length:,}"


def shorten(raw: str, limit: int = 40) -> str:
    text = raw.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
