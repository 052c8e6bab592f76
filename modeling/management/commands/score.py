from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._arguments import iso_date
from clmsite.management.commands._tenant import tenant_from_slug
from modeling.management.commands._progress import run_here, runs_here
from modeling.scoring import NoActiveModel
from modeling.services import InvalidAsOf, check_as_of, do_start_scoring


class Command(ClmCommand):
    help = "Score every customer with the active models as of a date (ignoring anything after it)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--as-of", required=True, type=iso_date, help="YYYY-MM-DD")
        parser.add_argument("--sync", action="store_true", help="score in this process, with a progress bar, instead of on workers (always so without a broker)")

    def handle(self, *args, tenant, as_of, sync, **options):
        from clmsite.tenancy import tenant_context
        from modeling import tasks
        from modeling.models import Job

        target = tenant_from_slug(tenant)
        try:
            check_as_of(target, as_of)
        except InvalidAsOf as exc:
            raise CommandError(f"--as-of: {exc}") from None
        try:  # do_start_scoring refuses a shop without a model for every target (NoActiveModel)
            if not runs_here(sync):
                self.stdout.write(f"Queued scoring job {do_start_scoring(target, as_of=as_of).pk} for {target.slug}; follow it on the Models page.")
                return
            with tenant_context(target):
                pending = Job.objects.filter(kind=Job.Kind.SCORE, state__in=[Job.State.QUEUED, Job.State.RUNNING], params__as_of=as_of.isoformat()).first()
            if pending is not None:
                raise CommandError(f"A scoring of {as_of} is already {pending.get_state_display().lower()} (job {pending.pk}); "
                                   "wait for it to finish, or score another date.")
            job = do_start_scoring(target, as_of=as_of, queue=False)
        except NoActiveModel as exc:
            raise CommandError(str(exc)) from None
        run_here(self, target, job, tasks.score_whole, "Scoring", "Cancelled; the predictions of that date are as they were.")
