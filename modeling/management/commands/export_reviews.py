from clmsite.management.base import ClmCommand
from clmsite.management.commands._tenant import tenant_from_slug
from modeling.exports import write_reviews_csv


class Command(ClmCommand):
    help = "Write every review's sentiment to a CSV file (review_id,sentiment,sentiment_score)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--out", required=True)

    def handle(self, *args, tenant, out, **options):
        target = tenant_from_slug(tenant)
        with open(out, "w", newline="", encoding="utf-8") as handle:
            count = write_reviews_csv(target, handle)
        self.stdout.write(f"Wrote {count:,} reviews to {out}")
