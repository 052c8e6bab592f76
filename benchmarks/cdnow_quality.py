"""Quality on the CDNOW sample: every family against BG/NBD, out of time, in one run.

    python benchmarks/cdnow_quality.py [--families bgnbd,tabular,transformer]

As of 1997-09-30 with a 91-day horizon: the families train on windows before the as-of
date, the champion per target is chosen on the most recent window (as in production),
then every family scores at the as-of date and is compared with the orders that really
came in 1997-10-01..1997-12-30.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clmsite.settings")

import django  # noqa: E402

django.setup()

from modeling.backtest import backtest, cdnow_history  # noqa: E402

AS_OF = dt.date(1997, 9, 30)
HORIZON = 91


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default="bgnbd,tabular,transformer")
    args = parser.parse_args()
    rows = backtest(cdnow_history(), AS_OF, HORIZON, tuple(args.families.split(",")))
    print(f"CDNOW sample, as of {AS_OF}, horizon {HORIZON} days (test = what happened after the as-of date)")
    header = f"{'family':<12} {'serves':<22} {'val AUC':>8} {'test AUC':>9} {'test PR-AUC':>11} {'exp. orders':>12} {'actual':>7} {'error %':>8} {'train s':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        t = row.test
        print(
            f"{row.family:<12} {','.join(row.served_for) or '-':<22} {row.validation['auc']:>8.4f} {t['auc']:>9.4f} {t['pr_auc']:>11.4f} "
            f"{t['orders_total_predicted']:>12.1f} {t['orders_total_actual']:>7.0f} {t['orders_total_error_pct']:>8.2f} {row.train_seconds:>8.1f}"
        )
    served = next(r for r in rows if "purchase" in r.served_for)
    served_orders = next(r for r in rows if "orders" in r.served_for)
    baseline = next(r for r in rows if r.family == "bgnbd")
    auc_ok = served.test["auc"] >= baseline.test["auc"]
    error_ok = abs(served_orders.test["orders_total_error_pct"]) <= abs(baseline.test["orders_total_error_pct"])
    print()
    print(f"served purchase model: {served.family}, test AUC {served.test['auc']:.4f} vs BG/NBD {baseline.test['auc']:.4f} -> {'OK' if auc_ok else 'BELOW'}")
    print(
        f"served orders model: {served_orders.family}, total error {served_orders.test['orders_total_error_pct']:+.2f}% vs BG/NBD "
        f"{baseline.test['orders_total_error_pct']:+.2f}% -> {'OK' if error_ok else 'WORSE'}"
    )


if __name__ == "__main__":
    main()
