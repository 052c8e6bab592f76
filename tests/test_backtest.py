"""The CDNOW out-of-time backtest: the served model is at least as good as BG/NBD."""

from __future__ import annotations

import datetime as dt

import pytest

from modeling.backtest import backtest, cdnow_history
from modeling.training import AUC_TIE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows():
    # Every family, as `train --family auto` trains them (the transformer on CPU: ~30 s here).
    return backtest(cdnow_history(), dt.date(1997, 9, 30), 91, ("bgnbd", "tabular", "transformer"))


def test_served_purchase_model_is_at_least_as_good_as_bgnbd_out_of_time(rows):
    served = next(r for r in rows if "purchase" in r.served_for)
    orders = next(r for r in rows if "orders" in r.served_for)
    bgnbd = next(r for r in rows if r.family == "bgnbd")
    challengers = [r for r in rows if r.family != "bgnbd"]

    # The champion is the best on the validation window, the only data it may be chosen on:
    # the highest AUC, or within AUC_TIE of it the lowest log loss...
    best = max(r.validation["auc"] for r in rows)
    assert served.validation["auc"] >= best - AUC_TIE
    assert served.validation["log_loss"] == min(r.validation["log_loss"] for r in rows if r.validation["auc"] >= best - AUC_TIE)
    # ...and, out of time, it is no worse than the baseline, which is not a given: BG/NBD
    # could serve, but the learned families rank next quarter's buyers better. Not by much
    # (0.7872 and 0.7858 against 0.7845 in a fresh process on 2026-12-06; the transformer's
    # figure moves by a few thousandths with thread counts and load), so only the order is
    # asserted: an AUC gap this small on 2,357 customers is no claim of a real difference.
    assert served.test["auc"] >= bgnbd.test["auc"]
    assert max(r.test["auc"] for r in challengers) > bgnbd.test["auc"]
    assert abs(orders.test["orders_total_error_pct"]) <= abs(bgnbd.test["orders_total_error_pct"])
    # Honest numbers: BG/NBD on CDNOW ranks buyers well above chance out of time.
    assert 0.75 < bgnbd.test["auc"] < 0.82
    assert bgnbd.test["orders_total_actual"] == 726


def test_every_family_is_judged_on_the_same_customers(rows):
    assert len({r.test["n"] for r in rows}) == 1
    assert len({r.validation["n"] for r in rows}) == 1
