"""Argument types the commands share (a module whose name starts with _ is no command)."""

import argparse
import datetime as dt


def iso_date(text: str) -> dt.date:
    """A YYYY-MM-DD date; argparse names the option: "argument --as-of: 2026-13-01 is not a
    date like 2026-06-30" (Python's own "Invalid isoformat string" reads like internals)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a date like 2026-06-30") from None
