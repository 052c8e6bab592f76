"""Form fields the pages share."""

from __future__ import annotations

from typing import Any

from django import forms


class PercentField(forms.FloatField):
    """A share typed and shown in percent (30), kept as a fraction (0.3), as the pages'
    text speaks of it ("below 30%")."""

    def __init__(self, *, max_percent: float = 100, **kwargs: Any) -> None:
        super().__init__(min_value=0, max_value=max_percent, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return f"{round(value * 100, 4):g}" if isinstance(value, int | float) and not isinstance(value, bool) else value

    def has_changed(self, initial: Any, data: Any) -> bool:  # the initial value is a fraction, the data a percentage
        scaled = round(initial * 100, 4) if isinstance(initial, int | float) and not isinstance(initial, bool) else initial
        return super().has_changed(scaled, data)

    def clean(self, value: Any) -> float | None:
        percent = super().clean(value)
        return None if percent is None else percent / 100
