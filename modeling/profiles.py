"""The customer as a short paragraph of text, for the transformer family.

A profile says in words what the numeric features say (tenure, orders, cadence, spend,
recency, trend) and adds what they cannot: which categories and products, and what the
customer wrote in reviews. It is built only from rows at or before ``as_of``.

Numbers are rounded on purpose (weeks, months, two significant digits of money): a profile that
does not change from one day to the next keeps its cached embedding, so rescoring only
re-embeds the customers whose story actually changed. The text is deterministic and kept
under ~120 tokens so a batch stays cheap on CPU. Money carries the shop's currency code
("EUR 240"); the cadence is the median gap between days with an order, rounded as the
customer page rounds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd

from modeling.features import History, as_timestamp

MAX_CATEGORIES = 3
MAX_PRODUCTS = 3
MAX_SNIPPETS = 2
SNIPPET_WORDS = 12
PRODUCT_CHARS = 32
# history_from_frames fills lines without a category with this placeholder; it says nothing.
PLACEHOLDER_CATEGORY = "Other"


def profile_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _duration(days: float) -> str:
    """Coarse durations: exact days only under two weeks, then weeks, months, years."""
    days = float(days) if np.isfinite(days) else 0.0
    if days < 1:
        return "less than a day"
    if days < 14:
        count = int(days)
        return f"{count} day" if count == 1 else f"{count} days"
    if days < 60:
        return f"{round(days / 7)} weeks"
    if days < 730:
        return f"{round(days / 30.44)} months"
    return f"{round(days / 365.25 * 2) / 2:g} years"


def _money(amount: float, currency: str | None) -> str:
    """Whole units under 100, two significant digits above (EUR 240, EUR 1,200). Without a
    currency (a caller that does not know the shop) the "$" profiles always had, so their
    texts, and the embeddings cached by text, stay as they were."""
    amount = float(amount) if np.isfinite(amount) and amount > 0 else 0.0
    if amount >= 100:
        amount = round(amount, 1 - int(np.floor(np.log10(amount))))
    return f"{currency} {round(amount):,}" if currency else f"${round(amount):,}"


def _snippet(text: str) -> str:
    words = " ".join(str(text).split()).replace("'", "’").split(" ")
    short = " ".join(words[:SNIPPET_WORDS])
    return short + ("…" if len(words) > SNIPPET_WORDS else "")


def _sentiment_word(score: float) -> str:
    if score >= 0.3:
        return "positive"
    if score <= -0.3:
        return "negative"
    return "mixed"


def _top_per_customer(lines: pd.DataFrame, column: str, limit: int, skip: str | None = None) -> dict[int, list[str]]:
    """Each customer's most-spent-on values of ``column`` (ties by name, so stable)."""
    values = lines[column].fillna("").astype(str).str.strip().str.slice(0, PRODUCT_CHARS).str.strip()
    keep = values.ne("") & (values.ne(skip) if skip else True)
    totals = lines.loc[keep].assign(value=values[keep]).groupby(["customer", "value"], as_index=False)["amount"].sum()
    totals = totals.sort_values(["customer", "amount", "value"], ascending=[True, False, True], kind="stable")
    top = totals.groupby("customer", sort=False).head(limit)
    return top.groupby("customer", sort=False)["value"].agg(list).to_dict()


def customer_profiles(
    history: History, as_of: dt.date | dt.datetime | pd.Timestamp, features: pd.DataFrame, currency: str | None = None
) -> pd.Series:
    """One profile per customer in ``features`` (computed as of ``as_of``); index = customer pk.
    ``currency`` is the shop's (``tenant.currency``); a model must read the same at training
    and at scoring.

    Example: "First order 13 months ago. 3 orders, last one 2 weeks ago, usually every 6 weeks.
    Spent EUR 240 (avg EUR 80). Ordering less than before. Bought Running shoes, Socks (Trail
    Runner 2, Merino socks). Reviews: 2, avg 4.5 stars, positive tone; latest: ‘great fit
    but slow delivery’."
    """
    currency = currency if currency is not None else history.currency
    cut = as_timestamp(as_of)
    customers = features.index
    lines = history.lines[(history.lines["ordered_at"] <= cut) & history.lines["customer"].isin(customers)]
    reviews = history.reviews[(history.reviews["created_at"] <= cut) & history.reviews["customer"].isin(customers)]
    categories = _top_per_customer(lines, "category", MAX_CATEGORIES, skip=PLACEHOLDER_CATEGORY)
    products = _top_per_customer(lines, "product", MAX_PRODUCTS)
    review_sentences = _review_sentences(reviews)
    texts = []
    for customer, row in zip(customers, features.to_dict("records"), strict=True):
        parts = [_history_sentence(row, currency), _purchases_sentence(categories.get(customer, []), products.get(customer, [])), review_sentences.get(customer, "")]
        texts.append(" ".join(part for part in parts if part))
    return pd.Series(texts, index=customers, name="profile", dtype=object)


def _history_sentence(row: dict[str, float], currency: str | None) -> str:
    orders = int(row.get("orders", 0) or 0)
    # Days with an order (features.order_days): orders on one day are one purchase, so a
    # rhythm and a trend need two days, as the lifecycle's "bought again" does.
    days = int(row.get("order_days", orders) or 0)
    sentences = [f"First order {_duration(row.get('tenure_days', 0))} ago."]
    order_word = "order" if orders == 1 else "orders"
    ago = f"{_duration(row.get('recency_days', 0))} ago"
    recency = f"last one {ago}" if days > 1 else f"all on one day, {ago}" if orders > 1 else ago
    cadence = row.get("gap_median", np.nan)
    # The customer page's "usually every N days" (customers.services.queries): the median gap, rounded, at least a day.
    usual = f", usually every {_duration(max(1, round(cadence)))}" if days > 1 and pd.notna(cadence) else ""
    sentences.append(f"{orders} {order_word}, {recency}{usual}.")
    spent = f"Spent {_money(row.get('total_spent', 0), currency)}"
    if orders > 1:
        spent += f" (avg {_money(row.get('avg_order_value', 0), currency)})"
    sentences.append(spent + ".")
    trend = row.get("order_trend", 0)
    if days > 1 and pd.notna(trend) and trend != 0:
        sentences.append("Ordering more than before." if trend > 0 else "Ordering less than before.")
    return " ".join(sentences)


def _purchases_sentence(categories: list[str], products: list[str]) -> str:
    if not categories and not products:
        return ""
    text = "Bought " + (", ".join(categories) if categories else "products")
    if products:
        text += f" ({', '.join(products)})"
    return text + "."


def _review_sentences(reviews: pd.DataFrame) -> dict[int, str]:
    """Per customer: count, average rating to the half star, tone, then the latest snippets."""
    if reviews.empty:
        return {}
    reviews = reviews.sort_values(["customer", "created_at", "review"], ascending=[True, False, False], kind="stable")
    grouped = reviews.groupby("customer", sort=False)
    counts = grouped.size().to_dict()
    ratings = grouped["rating"].mean().to_dict()
    tones = grouped["sentiment_score"].mean().to_dict()
    with_text = reviews[reviews["text"].fillna("").astype(str).str.strip().ne("")]
    snippets = with_text.groupby("customer", sort=False).head(MAX_SNIPPETS).groupby("customer", sort=False)["text"].agg(list).to_dict()
    sentences = {}
    for customer, count in counts.items():
        text = f"Reviews: {count}"
        if pd.notna(ratings[customer]):
            stars = round(float(ratings[customer]) * 2) / 2
            text += f", avg {stars:g} star{'' if stars == 1 else 's'}"
        if pd.notna(tones[customer]):
            text += f", {_sentiment_word(float(tones[customer]))} tone"
        if customer in snippets:
            text += "; latest: " + ", ".join(f"‘{_snippet(s)}’" for s in snippets[customer])
        sentences[customer] = text + "."
    return sentences
