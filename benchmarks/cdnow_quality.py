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
    header = (f"{'family':<12} {'serves':<22} {'val AUC':>8} {'test AUC':>9} {'test PR-AUC':>11} {'log loss':>9} {'orders dev.':>11} {'orders MAE':>11} "
              f"{'exp. orders':>12} {'actual':>7} {'error %':>8} {'train s':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        t = row.test
        print(
            f"{row.family:<12} {','.join(row.served_for) or '-':<22} {row.validation['auc']:>8.4f} {t['auc']:>9.4f} {t['pr_auc']:>11.4f} {t['log_loss']:>9.4f} "
            f"{t['orders_deviance']:>11.4f} {t['orders_mae']:>11.4f} {t['orders_total_predicted']:>12.1f} {t['orders_total_actual']:>7.0f} {t['orders_total_error_pct']:>8.2f} {row.train_seconds:>8.1f}"
        )
    print()
    # The served model against the best of the others on the test window: when BG/NBD serves,
    # comparing it with itself would say nothing.
    for target, key, label, higher_is_better in (("purchase", "auc", "test AUC", True), ("orders", "orders_deviance", "orders deviance (per customer)", False),
                                                      ("orders", "orders_mae", "orders MAE (per customer)", False)):
        served = next(r for r in rows if target in r.served_for)
        others = [r for r in rows if r is not served]
        if not others:
            continue
        best = (max if higher_is_better else min)(others, key=lambda r: r.test[key])
        ahead = served.test[key] >= best.test[key] if higher_is_better else served.test[key] <= best.test[key]
        print(f"served {target} model: {served.family}, {label} {served.test[key]:.4f}; best other: {best.family} {best.test[key]:.4f} "
              f"-> {'served is best' if ahead else 'another would have done better on this test window'}")

if __name__ == "__main__":
    main()
