"""Request body parsers for the API (DEFAULT_PARSER_CLASSES)."""

from __future__ import annotations

import codecs
import re
from typing import Any

from rest_framework import exceptions, parsers
from rest_framework.utils import json

# An unpaired UTF-16 surrogate: JSON's "\ud800" escape decodes to one, which is no character
# at all, so no database or response can hold it.
SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(key: str) -> str:
    return SURROGATE.sub("\ufffd", key)[:60]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (Python's parser keeps the last quietly) and
    unpaired surrogates in keys or string values."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if SURROGATE.search(key) or _holds_surrogate(value):
            raise exceptions.ParseError(f"JSON parse error - the value of '{_shown(key)}' holds an unpaired surrogate escape (such as \\ud800), "
                                        "which is not a character: send the text as UTF-8, or escape both halves of the pair.")
        if key in result:
            raise exceptions.ParseError(f"JSON parse error - an object has the key '{_shown(key)}' twice; send each key once.")
        result[key] = value
    return result


class JSONNumber(float):
    """A JSON number with a fraction or an exponent, keeping the text it was written as: an id
    sent as 1.00000000000000000001 is that id, where the float alone read as 1 (and merged it
    with customer "1"). Everywhere else it is the float."""

    text: str

    def __new__(cls, text: str) -> JSONNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus: a body nested deeper than Python's parser recurses is a 400
    like any malformed JSON, not a RecursionError; and a key given twice in one object, or text
    with an unpaired surrogate (which no database column can store), is a 400 too."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"  # a byte order mark some clients write (RFC 8259 lets a parser ignore it)
        try:
            data = json.load(codecs.getreader(encoding)(stream), object_pairs_hook=_object, parse_float=JSONNumber,
                             parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply.") from None
        except UnicodeDecodeError as exc:  # Python's "'utf-8' codec can't decode byte 0xff in position 0" names its internals
            utf16 = exc.start == 0 and bytes(exc.object[:2]) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            where = "it starts with a UTF-16 byte order mark" if utf16 else f"it holds the byte 0x{exc.object[exc.start]:02X}, which UTF-8 does not have there; Latin-1 text, say"
            raise exceptions.ParseError(f"JSON parse error - the body is not UTF-8 text ({where}): send JSON encoded as UTF-8.") from None
        except ValueError as exc:
            # Python's own advice ("use sys.set_int_max_str_digits()") means nothing to a client.
            said = "a number has too many digits to read" if "int_max_str_digits" in str(exc) else str(exc)
            raise exceptions.ParseError(f"JSON parse error - {said}") from None
        if _holds_surrogate(data):  # strings outside any object
            raise exceptions.ParseError("JSON parse error - the body holds an unpaired surrogate escape (such as \\ud800), which is not a character.")
        return data


def _holds_surrogate(data: Any) -> bool:
    if isinstance(data, str):
        return bool(SURROGATE.search(data))
    if isinstance(data, list):
        return any(_holds_surrogate(item) for item in data)
    return False  # numbers, and objects: checked as they were read
