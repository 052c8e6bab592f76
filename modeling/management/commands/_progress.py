from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def terminal_progress(description: str) -> Iterator[Callable[[float, str], None]]:
    """A tqdm bar on stderr driven by (fraction, message) callbacks."""
    with tqdm(total=100, desc=description, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}", dynamic_ncols=True) as bar:

        def update(fraction: float, message: str = "") -> None:
            bar.n = round(100 * max(0.0, min(fraction, 1.0)))
            bar.set_postfix_str(message[:60])
            bar.refresh()

        yield update
