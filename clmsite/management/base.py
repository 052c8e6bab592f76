"""The base of our management commands: a failure ends with a one-line message and exit
status 1, never a traceback (the traceback goes to the log); Ctrl-C with "Interrupted." and 130."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

log = logging.getLogger("clm.commands")


class ClmCommand(BaseCommand):
    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except (CommandError, SystemExit):
            raise
        except KeyboardInterrupt:
            # Ctrl-C: one line and the shell's status for it (128 + SIGINT), not a traceback. What
            # the command was doing has already stopped (a job it ran here is marked failed).
            self.stderr.write("\nInterrupted.")
            raise SystemExit(130) from None
        except Exception as exc:
            if options.get("traceback"):
                raise
            log.debug("command failed", exc_info=True)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, DatabaseError) and ("no such table" in text or "does not exist" in text):
                raise CommandError(f"The database is not set up ({text}): run `python manage.py migrate` first.") from exc
            if isinstance(exc, OSError) and exc.filename:
                raise CommandError(f"{exc.strerror or text}: {exc.filename}") from exc
            raise CommandError(f"{type(exc).__name__}: {text} (run with --traceback for details)") from exc
