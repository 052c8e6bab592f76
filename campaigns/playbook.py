"""Recommended next actions: the tenant's playbook applied to every customer.

The playbook is an ordered list of :class:`PlaybookRule`; the first enabled rule whose
conditions all hold gives the customer's one primary action. The reason names what
matched, and the priority is the value at risk (the chance of an order lost against the customer's own
pace x what they would spend if they ordered again, :func:`value_at_risk`).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd
from django.db.models import Q

from campaigns.models import Action, Channel, PlaybookRule
from clmsite.models import Tenant
from clmsite.tenancy import shop_day_end, tenant_context
from modeling.explain import whole_units

# The defaults a new tenant starts from; the Playbook page edits them.
DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "Service recovery after a negative review", "sentiment_max": -0.3, "days_since_max": None,
     "action": Action.SERVICE_RECOVERY, "channel": Channel.PHONE},
    {"name": "VIP care for valuable loyal customers", "stages": ["loyal"], "tiers": ["high"], "action": Action.VIP_CARE, "channel": Channel.EMAIL},
    # An offer where it may change the outcome: at risk by their rhythm but still likely to buy
    # (the rhythm slipped), a customer gets the check-in below, not a discount.
    {"name": "Win-back offer for valuable customers at risk", "stages": ["at_risk"], "tiers": ["high", "medium"], "churn_min": 0.5,
     "action": Action.WIN_BACK, "channel": Channel.EMAIL, "offer_pct": 0.15, "offer_cap": Decimal("50.00")},
    {"name": "Second-purchase nudge for new customers", "stages": ["new"], "action": Action.SECOND_PURCHASE, "channel": Channel.EMAIL,
     "offer_pct": 0.10, "offer_cap": Decimal("15.00")},
    {"name": "Welcome back reactivated customers", "stages": ["reactivated"], "action": Action.REACTIVATION_THANKS, "channel": Channel.EMAIL},
    # A lapsed customer's predicted value is low (the models expect little more), but one who
    # spent among the shop's top tenth is worth a personal win-back before giving up on them:
    # a personal email, no discount by default.
    {"name": "Win-back for lapsed big spenders", "stages": ["lapsed"], "spent_top_share": 0.1, "action": Action.WIN_BACK, "channel": Channel.EMAIL},
    # A former regular's predicted value is low too, but several orders say the shop once
    # suited them: a win-back email costs little, so they get one, without a discount.
    {"name": "Win-back for lapsed regulars", "stages": ["lapsed"], "orders_min": 3, "action": Action.WIN_BACK, "channel": Channel.EMAIL},
    {"name": "No action for lapsed customers of low predicted value", "stages": ["lapsed"], "tiers": ["low"], "action": Action.NO_ACTION, "channel": Channel.NONE},
    {"name": "Win-back for other lapsed customers", "stages": ["lapsed"], "action": Action.WIN_BACK, "channel": Channel.ADS,
     "offer_pct": 0.10, "offer_cap": Decimal("20.00")},
    {"name": "Retention check-in for other customers at risk", "stages": ["at_risk"], "action": Action.RETENTION, "channel": Channel.EMAIL},
    # Sign-ups who have stayed silent for long almost never order (none of 274 over 90 days in
    # the demo): an incentive for them is budget spent on nobody.
    {"name": "No incentive for prospects unlikely to order", "stages": ["prospect"], "churn_min": 0.98, "action": Action.NO_ACTION, "channel": Channel.NONE},
    {"name": "First-purchase incentive for prospects", "stages": ["prospect"], "action": Action.CONVERT_PROSPECT, "channel": Channel.EMAIL,
     "offer_pct": None, "offer_cap": Decimal("10.00")},
    {"name": "Cross-sell the strongest co-purchased category", "stages": ["active", "loyal"], "action": Action.CROSS_SELL, "channel": Channel.EMAIL},
    {"name": "Nurture everyone else", "action": Action.NURTURE, "channel": Channel.EMAIL},
]
# An offer (a share of what the customer would spend if they order again) smaller than this
# share of the rule's cap is not made.
MIN_OFFER_SHARE = Decimal("0.1")
SENTIMENT_WINDOW_DAYS = 60  # a negative review counts for service recovery this long
NEGATIVE_RATING_MAX = 2
# The tone a negative review counts with at most, on the sentiment scale (-1..1): a 1-2 star
# review whose text reads neutral still matches the default rule (sentiment at most -0.3).
NEGATIVE_TONE_MAX = -0.5


def negative_review_filter(as_of: dt.date, tenant: Any) -> Q:
    """The one definition of a negative review, for the dashboard's alert list and for the
    playbook's sentiment condition alike: rated 1-2 stars or read as negative by the
    sentiment model, written in the 60 days up to the end of ``as_of`` (the shop's day)."""
    end = shop_day_end(as_of, tenant)
    return (Q(created_at__lte=end, created_at__gt=end - dt.timedelta(days=SENTIMENT_WINDOW_DAYS))
            & (Q(rating__lte=NEGATIVE_RATING_MAX) | Q(sentiment="negative")))


def negative_review_tone(rating: int | None, sentiment_score: float | None) -> float:
    """How negative a negative review is, for rules with a sentiment condition: the lower of
    its text's sentiment and its stars on the same scale ((stars - 3) / 2), and never above
    NEGATIVE_TONE_MAX, so every negative review matches the default -0.3."""
    tones = [NEGATIVE_TONE_MAX]
    if sentiment_score is not None and not pd.isna(sentiment_score):
        tones.append(float(sentiment_score))
    if rating is not None and not pd.isna(rating):
        tones.append((float(rating) - 3.0) / 2.0)
    return min(tones)


def ensure_default_playbook(tenant: Tenant) -> list[PlaybookRule]:
    """The tenant's rules, creating the defaults the first time."""
    with tenant_context(tenant):
        rules = list(PlaybookRule.objects.all())
        if not rules:
            PlaybookRule.objects.bulk_create([PlaybookRule(tenant=tenant, position=10 * (i + 1), **rule) for i, rule in enumerate(DEFAULT_RULES)])
            rules = list(PlaybookRule.objects.all())
    return rules


def category_affinity(lines: pd.DataFrame) -> pd.DataFrame:
    """Lift of buying category B among buyers of category A (rows A, columns B)."""
    if lines.empty:
        return pd.DataFrame()
    bought = pd.crosstab(lines["customer"], lines["category"]).clip(upper=1)
    if bought.shape[1] < 2:
        return pd.DataFrame()
    together = bought.T @ bought
    support = bought.mean()
    n = len(bought)
    values = (together.to_numpy() / n) / np.outer(support, support)
    np.fill_diagonal(values, 0.0)
    values[together.to_numpy() < 5] = 0.0  # ignore pairs seen fewer than five times
    return pd.DataFrame(values, index=together.index, columns=together.columns)


def cross_sell_category(bought: list[str], affinity: pd.DataFrame) -> tuple[str, float] | None:
    """The category not yet bought with the strongest lift from those bought."""
    known = [c for c in bought if c in affinity.index]
    if not known or affinity.empty:
        return None
    scores = affinity.loc[known].max().drop(labels=[c for c in bought if c in affinity.columns], errors="ignore")
    if scores.empty or scores.max() <= 1.0:
        return None
    return str(scores.idxmax()), float(scores.max())


# A customer's expected order value counts the shop's average order as this many orders of
# their own: one order says little about the next (the demo's Gamma-Gamma fit weighs it even
# less), eighty say nearly all.
SHOP_ORDERS_WEIGHT = 2


def spend_if_ordering(per_buyer: float, own_pace: float, own_average: float, own_orders: int, shop_average: float) -> float:
    """What a customer would spend in the horizon if they order again: the orders a buyer like
    them places (``per_buyer``, expected orders over the chance to buy), no more than their own
    pace gives in a horizon (``own_pace``) and one at least, x their own average order shrunk
    towards the shop's. From their history, not predicted value / chance: two models that
    disagreed made that a USD 20 one-time buyer's "USD 2,990 if they order again" and an
    86-order USD 450 regular's USD 73 (2026-12-07)."""
    order_value = (own_orders * own_average + SHOP_ORDERS_WEIGHT * shop_average) / (own_orders + SHOP_ORDERS_WEIGHT)
    return max(min(per_buyer, own_pace), 1.0) * order_value


def usual_chance(own_pace: float) -> float:
    """The chance of an order in a horizon at the customer's own pace (``own_pace`` orders a
    horizon), counted as a Poisson process: 1 - e^-pace. None yet (a prospect): 0."""
    return 1.0 - math.exp(-max(own_pace, 0.0))


def value_at_risk(churn: float | None, if_ordering: float, usual: float) -> float:
    """What the shop stands to lose in the horizon: the chance of an order the customer has
    lost against their own pace (``usual``, :func:`usual_chance`, less the predicted chance,
    1 - churn), x what they would spend if they ordered (:func:`spend_if_ordering`).

    A regular of 86 orders gone quiet loses nearly all of a near-certain order, and ranks
    first; a one-time buyer of two years ago had little chance to lose. Churn x that spend, with
    a fade below a 2% chance, ranked them the other way: the models give a long-gone one-time
    buyer 2-3% (nothing says they stopped) and the quiet regular 0.1%. Churn x predicted value,
    before, counted the chance twice. A prospect has nothing to lose yet: 0. Not scored: 0."""
    if churn is None:
        return 0.0
    return round(max(0.0, usual - (1.0 - churn)) * if_ordering, 2)


def chance_text(chance: float) -> str:
    """A chance as a page shows it: 37%, and under 10% with one decimal (0.4%, not 0%)."""
    if 0.0 < chance < 0.001:
        return "under 0.1%"
    return f"{chance:.0%}" if chance >= 0.1 or chance <= 0.0 else f"{chance:.1%}"


def chance_pair(usual: float, now: float) -> tuple[str, str]:
    """Two chances a value at risk subtracts, as :func:`chance_text` shows them, with a decimal
    each where whole percents would hide the difference: "100% at their usual pace, 99% now"
    x USD 3,958 read as USD 40 beside a value at risk of USD 55 (99.6% and 98.2%)."""
    if abs(usual - now) < 0.1 and min(usual, now) >= 0.1:
        return tuple("over 99.9%" if chance > 0.9995 else f"{chance:.1%}" for chance in (usual, now))  # type: ignore[return-value]
    return chance_text(usual), chance_text(now)


def _matches(rule: PlaybookRule, row: dict[str, Any]) -> bool:
    checks = [
        not rule.stages or row["stage"] in rule.stages,
        not rule.tiers or row["tier"] in rule.tiers,
        rule.churn_min is None or (row["churn"] is not None and row["churn"] >= rule.churn_min),
        rule.churn_max is None or (row["churn"] is not None and row["churn"] <= rule.churn_max),
        rule.sentiment_max is None or (row["recent_sentiment"] is not None and row["recent_sentiment"] <= rule.sentiment_max),
        rule.value_at_risk_min is None or row["value_at_risk"] >= rule.value_at_risk_min,
        rule.days_since_min is None or (row["days_since"] is not None and row["days_since"] >= rule.days_since_min),
        rule.days_since_max is None or (row["days_since"] is not None and row["days_since"] <= rule.days_since_max),
        rule.spent_top_share is None or (row.get("spend_top") is not None and row["spend_top"] <= rule.spent_top_share),
        rule.orders_min is None or row.get("orders", 0) >= rule.orders_min,
    ]
    return all(checks)


def recommend(rules: list[PlaybookRule], row: dict[str, Any], affinity: pd.DataFrame, currency: str = "") -> dict[str, Any]:
    """The first matching rule's action for one customer, with detail, offer and reason.

    ``row``: stage, tier, churn, value (predicted), if_ordering (what they would spend if they
    order again, :func:`spend_if_ordering`), usual (their chance of an order at their own pace,
    :func:`usual_chance`), value_at_risk, days_since, orders and spent (lifetime),
    spend_top (the top share of buyers its spend is in: 0.01 = top 1%), recent_sentiment
    (the tone of the worst negative review in the window, see :func:`negative_review_tone`;
    None without one), negative_review (that review in words), categories (bought), stage_reason."""
    for rule in rules:
        if not rule.enabled or not _matches(rule, row):
            continue
        detail, offer = "", None
        if rule.action == Action.CROSS_SELL:
            pick = cross_sell_category(row["categories"], affinity)
            if pick is None:
                continue  # nothing to cross-sell: the next rule decides
            detail = f"suggest {pick[0]} (bought together {pick[1]:.1f}× more often than chance)"
        if rule.offer_cap is not None:
            cap = float(rule.offer_cap)
            # A share of what they would spend if they order again: the offer is only used then.
            offer = min(cap, rule.offer_pct * row["if_ordering"]) if rule.offer_pct is not None else cap
            offer = Decimal(str(round(max(offer, 0.0), 2)))
            # At the cap, the spend it was drawn from is named too: "up to USD 50" beside a predicted
            # value of USD 51 read as a discount worth all they are expected to bring.
            capped = (f"{rule.offer_pct:.0%} of the {currency}{whole_units(row['if_ordering'])} they would spend"
                      if rule.offer_pct is not None and offer < rule.offer_cap
                      else f"at the rule's cap: {rule.offer_pct:.0%} of the {currency}{whole_units(row['if_ordering'])} they would spend is more"
                      if rule.offer_pct is not None else "at the rule's cap")
            share = offer
            if rule.offer_pct is not None and offer < rule.offer_cap:  # a share of a value: whole units, as a coupon reads (3, not 3.39), never above the share
                offer = offer.quantize(Decimal(1), rounding=ROUND_DOWN)
            if offer <= 0 or share < MIN_OFFER_SHARE * rule.offer_cap:  # cents off: worth less than the message
                if rule.offer_pct is None:
                    why = "the rule's cap is nothing"
                else:
                    short = f"under a tenth of the {currency}{rule.offer_cap:,.2f} cap" if share < MIN_OFFER_SHARE * rule.offer_cap else "less than a whole unit"
                    why = f"{rule.offer_pct:.0%} of the {currency}{whole_units(row['if_ordering'])} they would spend is {currency}{share:,.2f}, {short}"
                detail = detail or f"no offer: {why}"
                offer = None
            else:
                detail = detail or f"offer up to {currency}{offer:,.2f} ({capped})"
        return {
            "action": rule.action, "channel": rule.channel, "offer": offer, "detail": detail,
            "rule_name": rule.name, "reason": _reason(rule, row, currency),
        }
    return {"action": Action.NURTURE, "channel": Channel.EMAIL, "offer": None, "detail": "", "rule_name": "", "reason": "no playbook rule matched"}


def _reason(rule: PlaybookRule, row: dict[str, Any], currency: str = "") -> str:
    """Why the rule matched, in words, money in the shop's currency (``currency`` as "USD ")."""
    parts = [row["stage_reason"]]
    if rule.tiers and "value tier" not in row["stage_reason"]:  # "loyal: 6 orders, top value tier" says it already
        parts.append(f"{row['tier']} predicted-value tier")  # the tier of the value to come: a big past spender can be low
    if rule.spent_top_share is not None and row.get("spend_top") is not None:
        parts.append(f"spent {currency}{whole_units(row['spent'])} in all, top {max(row['spend_top'], 0.01):.0%} of buyers")
    if rule.orders_min is not None and f"{row.get('orders', 0)} orders" not in row["stage_reason"]:
        parts.append(f"{row.get('orders', 0)} orders in all")
    if rule.sentiment_max is not None and row["recent_sentiment"] is not None:
        parts.append(row.get("negative_review") or f"negative review, sentiment {row['recent_sentiment']:+.2f}")
    if row["churn"] is not None and row.get("stage") == "prospect":  # never bought: nothing to churn from, no pace to fall behind
        predicted = f", {currency}{whole_units(row['value'])} predicted" if row["value"] else ""
        parts.append(f"{chance_text(1.0 - row['churn'])} likely to place a first order{predicted}")
    elif row["churn"] is not None and row["if_ordering"]:
        usual, now = chance_pair(row["usual"], 1.0 - row["churn"])
        pace = "their old pace" if row.get("stage") == "lapsed" else "their usual pace"  # 600 days away: no longer "usual"
        parts.append(f"value at risk {currency}{whole_units(row['value_at_risk'])} ({usual} likely to order at {pace}, {now} now, "
                     f"× {currency}{whole_units(row['if_ordering'])} if they order)" if row["value_at_risk"] > 0 else
                     f"nothing at risk: {now} likely to order, at or above the {usual} of their usual pace")
    return f"{rule.name} — " + "; ".join(part for part in parts if part)
