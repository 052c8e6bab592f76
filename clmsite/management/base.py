"""The base of our management commands: a failure ends with a one-line message and exit
status 1, never a traceback (the traceback goes to the log)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("clm.commands")


class ClmCommand(BaseCommand):
    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except (CommandError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if options.get("traceback"):
                raise
            log.debug("command failed", exc_info=True)
            raise CommandError(f"{type(exc).__name__}: {exc}".strip().splitlines()[0] + " (run with --traceback for details)") from exc
