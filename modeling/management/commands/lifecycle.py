from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._arguments import iso_date
from clmsite.management.commands._tenant import tenant_from_slug
from modeling.insights import BACKFILL_MONTHS, insights_summary, refresh_insights
from modeling.management.commands._progress import terminal_progress
from modeling.services import InvalidAsOf, check_as_of


class Command(ClmCommand):
    help = "Recompute lifecycle stages (backfilling month-end history), RFM groups, learned segments and next actions as of a date."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--as-of", required=True, type=iso_date, help="YYYY-MM-DD; predictions of that date are used when they exist")
        parser.add_argument("--backfill-months", type=int, default=BACKFILL_MONTHS, help="month-end stage snapshots to fill in before the date")
        parser.add_argument("--rebuild-history", action="store_true", help="recompute those snapshots too, not only the missing ones (after the stage rules changed)")

    def handle(self, *args, tenant, as_of, backfill_months, rebuild_history=False, **options):
        target = tenant_from_slug(tenant)
        try:
            check_as_of(target, as_of)
        except InvalidAsOf as exc:
            raise CommandError(f"--as-of: {exc}") from None
        if not 0 <= backfill_months <= 120:
            raise CommandError("--backfill-months must be between 0 and 120")
        with terminal_progress(f"Stages, segments and actions for {target.slug}") as progress:
            summary = refresh_insights(target, as_of, backfill_months=backfill_months, progress=progress, rebuild_history=rebuild_history)
        self.stdout.write(insights_summary(summary))
