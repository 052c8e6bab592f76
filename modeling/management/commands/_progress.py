from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm


@contextmanager
def terminal_progress(description: str) -> Iterator[Callable[[float, str], None]]:
    """A tqdm bar on stderr driven by (fraction, message) callbacks."""
    # disable=None: a bar on a terminal only; a log or CI output gets no carriage-return frames.
    with tqdm(total=100, desc=description, unit="%", bar_format="{l_bar}{bar}| {n:.0f}%{postfix}", dynamic_ncols=True, disable=None) as bar:

        def update(fraction: float, message: str = "") -> None:
            bar.n = round(100 * max(0.0, min(fraction, 1.0)))
            bar.set_postfix_str(message[:60], refresh=False)
            bar.refresh()

        yield update


def runs_here(sync: bool) -> bool:
    """Whether a job runs in this command, with its bar (``--sync``): always without a broker,
    where no worker would take it (and a background thread would die with the command)."""
    from django.conf import settings

    return sync or settings.CELERY_TASK_ALWAYS_EAGER


def run_here(command: Any, tenant: Any, job: Any, work: Callable[..., tuple[dict[str, Any], str]], what: str, cancelled: str) -> dict[str, Any]:
    """Run a job created for this command (``--sync``) here, with a terminal bar, as a worker
    runs it: listed on the pages and in the API, cancellable from there, its heartbeat kept.
    Prints its message; a job that did not succeed ends the command with it. Returns the
    job's result."""
    from django.core.management.base import CommandError

    from clmsite.tenancy import tenant_context
    from modeling.tasks import run_job_here

    kind = job.get_kind_display()
    with terminal_progress(f"{kind} {tenant.slug}") as bar:
        result = run_job_here(tenant, job, work, what, cancelled, bar)
    with tenant_context(tenant):
        job.refresh_from_db()
    if result is None:
        raise CommandError(f"{kind} job {job.pk} {job.get_state_display().lower()}: {job.message}")
    command.stdout.write(f"{kind} job {job.pk}: {job.message}")
    return result
