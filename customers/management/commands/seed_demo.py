import datetime as dt

from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._arguments import iso_date
from customers.services.demo import DEFAULT_CUSTOMERS, DEFAULT_SEED, DemoImportFailed, do_seed_demo


def _check_end(day: dt.date) -> dt.date:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    if day > tomorrow:  # checked before anything is written: its orders would be refused as future ones
        raise CommandError(f"--end-date must not be after tomorrow ({tomorrow}): the history ends the day before it")
    return day


class Command(ClmCommand):
    help = (
        "Load the demo: a synthetic outdoor shop in tenant 'demo' (and with --cdnow the CDNOW sample in "
        "tenant 'cdnow'), owned by the login demo / demo12345. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--customers", type=int, default=DEFAULT_CUSTOMERS, help=f"customers in the synthetic shop (default {DEFAULT_CUSTOMERS:,})"
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
        parser.add_argument("--end-date", type=iso_date, help="last day of history is the day before this, YYYY-MM-DD (default: today, UTC)")
        parser.add_argument("--cdnow", action="store_true", help="also load the CDNOW sample into tenant 'cdnow'")
        parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic shop")

    def handle(self, *args, customers, seed, end_date, cdnow, no_synthetic, **options):
        if customers < 1:
            raise CommandError("--customers must be at least 1")
        if no_synthetic and not cdnow:
            raise CommandError("Nothing to load: --no-synthetic needs --cdnow.")
        day = _check_end(end_date) if end_date else None

        def report(message: str, *, ending: str = "\n") -> None:
            self.stdout.write(message, ending=ending)
            self.stdout.flush()

        try:
            summary = do_seed_demo(
                customers=customers,
                seed=seed,
                end_date=day,
                synthetic=not no_synthetic,
                cdnow=cdnow,
                report=report,
            )
        except DemoImportFailed as exc:
            raise CommandError(str(exc)) from None
        for tenant in summary.tenants:
            self.stdout.write(
                f"Tenant {tenant.slug} ({tenant.name}): {tenant.customers:,} customers, {tenant.orders:,} orders, {tenant.reviews:,} reviews"
            )
        self.stdout.write(self.style.SUCCESS(f"Ready: serve the app (make demo does, or manage.py runserver) and sign in as {summary.username} / {summary.password}"))
