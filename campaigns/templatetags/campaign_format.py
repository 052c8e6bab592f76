"""Formatting for campaign outcomes: rates in percent, their differences in percentage points."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(rate: float | None) -> str:
    """0.1234 → ``12.3%``."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


@register.filter
def share(value: float | None) -> str:
    """A campaign's control share as a merchant set it: 0.2 → ``20%``, 0.125 → ``12.5%``, and a
    share too small for a whole percent → ``<1%`` (not ``0%``: it still holds one customer out)."""
    if value is None:
        return "—"
    if 0 < value < 0.01:
        return "<1%"
    return f"{value * 100:.1f}".removesuffix(".0") + "%"


@register.filter
def points(difference: float | None) -> str:
    """A difference of two rates in signed percentage points: 0.0421 → ``+4.2``."""
    return "—" if difference is None else f"{difference * 100:+.1f}"


@register.filter
def signed_money(value: float | None) -> str:
    """-3.456 → ``-3.46``, 12 → ``+12.00``."""
    return "—" if value is None else f"{value:+,.2f}"
