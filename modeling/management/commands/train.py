from functools import partial

from django.core.management.base import CommandError

from clmsite.management.base import ClmCommand
from clmsite.management.commands._arguments import iso_date
from clmsite.management.commands._tenant import tenant_from_slug
from clmsite.templatetags.clm import family_label
from clmsite.tenancy import tenant_context
from modeling.management.commands._progress import run_here, runs_here
from modeling.models import ModelVersion
from modeling.services import InvalidAsOf, NothingToLearn, TrainingAlreadyRunning, check_as_of, do_start_training
from modeling.training import FAMILIES, chosen_families


class Command(ClmCommand):
    help = "Train the tenant's models as of a date (features up to it, labels inside it). --sync runs here with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--as-of", required=True, type=iso_date, help="YYYY-MM-DD")
        parser.add_argument("--horizon-days", type=int, default=None, help="7 to 730; default: the shop's horizon, as set in Settings")
        parser.add_argument("--family", default="auto", help=f"auto, or one or more of {','.join(FAMILIES)} (comma-separated): the families that may serve")
        parser.add_argument("--sync", action="store_true", help="train in this process, with a progress bar, instead of on a worker (always so without a broker)")
        parser.add_argument(
            "--sentiment-candidates", default=None, help="comma-separated: ngram,transformer (default: the tenant's setting, else both), for this run only"
        )

    def handle(self, *args, tenant, as_of, horizon_days, family, sync, sentiment_candidates, **options):
        from modeling import tasks

        target = tenant_from_slug(tenant)
        chosen = None
        if sentiment_candidates:
            chosen = [c.strip() for c in sentiment_candidates.split(",") if c.strip()]
            if not chosen or set(chosen) - {"ngram", "transformer"}:
                raise CommandError("--sentiment-candidates takes ngram, transformer or both")
        try:
            chosen_families(family)
        except ValueError as exc:
            raise CommandError(f"--family: {exc}") from None
        if horizon_days is not None and not 7 <= horizon_days <= 730:
            raise CommandError("--horizon-days must be between 7 and 730, as in Settings")
        try:
            check_as_of(target, as_of)
        except InvalidAsOf as exc:
            raise CommandError(f"--as-of: {exc}") from None
        try:
            # For this run only (the job's parameters); the tenant's saved settings are unchanged.
            start = partial(do_start_training, target, as_of=as_of, horizon_days=horizon_days, family=family, score_after=False, sentiment_candidates=chosen)
            if not runs_here(sync):
                self.stdout.write(f"Queued training job {start().pk} for {target.slug}; follow it on the Models page.")
                return
            job = start(queue=False)
        except TrainingAlreadyRunning as exc:
            raise CommandError(f"{str(exc).removesuffix('.')}; wait for it, or cancel it on the Models page.") from None
        except NothingToLearn as exc:
            raise CommandError(str(exc)) from None
        result = run_here(self, target, job, tasks.train, "Training", tasks.TRAINING_CANCELLED)
        for name, scores in result["metrics"].items():
            if name.startswith("sentiment"):
                self.stdout.write(f"  {name:<12} macro-F1 {scores.get('macro_f1')}  accuracy {scores.get('accuracy')}")
                continue
            self.stdout.write(
                f"  {name:<12} AUC {scores.get('auc')}  log loss {scores.get('log_loss')}  orders deviance {scores.get('orders_deviance')}  "
                f"MAE {scores.get('orders_mae')}  revenue deviance {scores.get('revenue_deviance')}  MAE {scores.get('revenue_mae')}"
            )
        with tenant_context(target):  # named as the Models page names them: "Gradient-boosted trees v3"
            serving = {v.pk: v for v in ModelVersion.objects.filter(pk__in=list(result["champions"].values()))}
        for target_name, pk in result["champions"].items():
            version = serving.get(pk)
            named = f"{family_label(version.family)} v{version.number}" if version is not None else "a model"
            self.stdout.write(f"  serving {target_name}: {named} (id {pk} in the API)")
        if not result["champions"] and not result["trained"]:
            raise CommandError("Nothing was trained.")
