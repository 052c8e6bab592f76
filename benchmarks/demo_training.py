"""Benchmark: training every family on the demo shop, on CPU, as an admin's "Retrain now" does.

    python benchmarks/demo_training.py [--customers 5000] [--database-url sqlite:///...]

Seeds the demo shop (``seed_demo``, fixed seed: ~5,000 customers, ~19,000 orders, ~2,800
reviews) into a fresh database (a temporary SQLite file unless ``--database-url`` is given),
then runs ``train_models(tenant, today, family="auto")`` — sentiment (n-gram and transformer
candidates), BG/NBD, boosted trees and the transformer — and prints the time of each stage,
taken from the job's own progress messages, and the validation scores of every candidate.
Goal: the whole training under 10 minutes on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--database-url", help="default: a temporary SQLite file (the embedded default)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-demo-training-")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir}/demo.sqlite3"
    os.environ.pop("CELERY_BROKER_URL", None)  # in-process, like make demo
    os.environ["CLM_MODEL_DIR"] = f"{workdir}/models"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clmsite.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", "seed_demo", "--customers", str(args.customers)], cwd=ROOT, check=True, capture_output=True)
    seed_seconds = time.perf_counter() - started

    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.utils import timezone

    from clmsite.models import Tenant
    from modeling.training import train_models

    tenant = Tenant.objects.get(slug="demo")
    stages: dict[str, list[float]] = {}
    clock = time.perf_counter()

    families = ("bgnbd", "tabular", "transformer")

    def progress(fraction: float, message: str) -> None:
        prefix = message.split(":", 1)[0]
        if message.startswith("Trained"):
            return
        stage = f"{prefix} (customer models)" if prefix in families else "data and sentiment (both candidates)"
        now = time.perf_counter() - clock
        stages.setdefault(stage, [now, now])[1] = now

    report = train_models(tenant, timezone.now().date(), family="auto", progress=progress)
    total = time.perf_counter() - clock

    print(f"Demo shop ({args.customers:,} customers) seeded in {seed_seconds:.1f} s; database {os.environ['DATABASE_URL'].split(':', 1)[0]}")
    print(f"{'stage (from the progress messages)':<40} {'from s':>8} {'to s':>8} {'seconds':>8}")
    ends = [first for first, _ in stages.values()][1:] + [total]
    for (stage, (first, _)), end in zip(stages.items(), ends, strict=True):
        print(f"{stage:<40} {first:>8.1f} {end:>8.1f} {end - first:>8.1f}")
    print()
    print(f"{'candidate':<26} {'validation metrics'}")
    for family, metrics in report.metrics.items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and k in ("auc", "macro_f1", "orders_mae", "brier"))
        print(f"{family:<26} {shown}")
    print()
    print(report.summary())
    verdict = "MET" if total < GOAL_SECONDS else "NOT MET"
    print(f"Training took {total:.0f} s on {os.cpu_count()} CPUs (goal < {GOAL_SECONDS} s): {verdict}")


if __name__ == "__main__":
    main()
