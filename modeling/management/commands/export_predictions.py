from clmsite.management.base import ClmCommand
from clmsite.management.commands._tenant import tenant_from_slug
from modeling.exports import write_predictions_csv


class Command(ClmCommand):
    help = "Write the latest predictions, one row per customer, to a CSV file."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--out", required=True)

    def handle(self, *args, tenant, out, **options):
        target = tenant_from_slug(tenant)
        with open(out, "w", newline="", encoding="utf-8") as handle:
            count = write_predictions_csv(target, handle)
        self.stdout.write(f"Wrote {count:,} customers to {out}" + ("" if count else " (no predictions yet: run train and score)"))
