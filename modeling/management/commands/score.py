from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._arguments import iso_date
from clmsite.management.commands._tenant import tenant_from_slug
from modeling.insights import insights_summary, refresh_insights
from modeling.management.commands._progress import queue_or_run_here, terminal_progress
from modeling.scoring import NoActiveModel, score_customers
from modeling.services import InvalidAsOf, check_as_of, do_start_scoring


class Command(ClmCommand):
    help = "Score every customer with the active models as of a date (ignoring anything after it)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--as-of", required=True, type=iso_date, help="YYYY-MM-DD")
        parser.add_argument("--sync", action="store_true", help="score in this process instead of on workers")

    def handle(self, *args, tenant, as_of, sync, **options):
        target = tenant_from_slug(tenant)
        try:
            check_as_of(target, as_of)
        except InvalidAsOf as exc:
            raise CommandError(f"--as-of: {exc}") from None
        if not sync:
            queue_or_run_here(self, target, lambda: do_start_scoring(target, as_of=as_of), queued=f"Queued scoring job {{job.pk}} for {target.slug}.")
            return
        from clmsite.tenancy import tenant_context
        from modeling.models import Job
        from modeling.sentiment_training import score_unscored_reviews

        with tenant_context(target):
            pending = Job.objects.filter(kind=Job.Kind.SCORE, state__in=[Job.State.QUEUED, Job.State.RUNNING], params__as_of=as_of.isoformat()).first()
        if pending is not None:
            raise CommandError(f"A scoring of {as_of} is already {pending.get_state_display().lower()} (job {pending.pk}); "
                               "wait for it to finish, or score another date.")
        score_unscored_reviews(target)
        try:
            with terminal_progress(f"Scoring {target.slug}") as progress:
                report = score_customers(target, as_of, progress=progress)
        except NoActiveModel as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.summary())
        with terminal_progress(f"Stages, segments and actions for {target.slug}") as progress:
            summary = refresh_insights(target, as_of, progress=progress)
        self.stdout.write(insights_summary(summary))
