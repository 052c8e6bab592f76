"""Form fields the pages share."""

from __future__ import annotations

from typing import Any

from django import forms


class PercentField(forms.FloatField):
    """A share typed and shown in percent (30), kept as a fraction (0.3), as the pages'
    text speaks of it ("below 30%")."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=0, max_value=100, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return f"{round(value * 100, 4):g}" if isinstance(value, int | float) and not isinstance(value, bool) else value

    def clean(self, value: Any) -> float | None:
        percent = super().clean(value)
        return None if percent is None else percent / 100
