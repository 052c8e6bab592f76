from pathlib import Path

from django.core.management.base import CommandError
from tqdm import tqdm

from clmsite.management.base import ClmCommand
from clmsite.management.commands._tenant import tenant_from_slug
from customers.services.import_jobs import do_import_here
from customers.services.imports import KINDS


class Command(ClmCommand):
    help = "Import a CSV of customers, products, orders or reviews. All rows or none; exits 1 on errors. --dry-run checks the file and writes nothing."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--kind", required=True, choices=KINDS)
        parser.add_argument("--dry-run", action="store_true", help="check the file as an import would and say what importing it would do; write nothing")
        parser.add_argument("file")

    def handle(self, *args, tenant, kind, file, dry_run, **options):
        target = tenant_from_slug(tenant)
        path = Path(file)
        if not path.is_file():
            what = "a directory" if path.is_dir() else "a device or a pipe, not a regular file" if path.exists() else ""
            raise CommandError(f"Not a file: {file} ({what})" if what else f"No such file: {file}")
        with tqdm(total=100, desc=f"{'Checking' if dry_run else 'Importing'} {kind}", unit="%", disable=None, bar_format="{l_bar}{bar}| {n:.0f}%{postfix}") as bar:

            def progress(fraction: float, message: str) -> None:
                bar.n = round(100 * fraction)
                bar.set_postfix_str(message)
                bar.refresh()

            # A job, as an upload is: the Imports page and the API list it and can cancel it.
            job, result = do_import_here(target, kind, str(path), echo=progress, dry_run=dry_run)
        if result is None:
            raise CommandError(f"Import job {job.pk} was cancelled; nothing was imported.")
        if not result.ok:
            self.stderr.write(result.message)
            for error in result.errors:
                column = f", column {error.column}" if error.column else ""
                self.stderr.write(f"  row {error.row}{column}: {error.message}")
            raise CommandError(f"Check of {path.name} failed; nothing was written." if dry_run else f"Import of {path.name} failed; nothing was imported.")
        self.stdout.write(self.style.SUCCESS(f"{result.message} ({'check' if dry_run else 'import'} job {job.pk})"))
        for name, value in result.details.items():
            label = name.replace("_", " ")
            self.stdout.write(f"  {label.replace(' written', ' an import would write') if dry_run else label}: {value:,}")
