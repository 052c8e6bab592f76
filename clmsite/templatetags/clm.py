from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def shop_guard(context: template.Context) -> str:
    """A form's shop: the hidden field ``tenant_required`` checks on a POST, so that a form
    opened in one shop is not saved into another the user switched to in another tab."""
    request = context.get("request")
    tenant = getattr(request, "tenant", None)
    return format_html('<input type="hidden" name="{}" value="{}">', SHOP_FIELD, tenant.pk) if tenant is not None else ""


SHOP_FIELD = "shop"


@register.filter
def iso_duration(value: object) -> str:
    """django-axes's cool-off as a person reads it: "PT15M" is "15 minutes", "PT1H30M" "1 hour 30 minutes"
    (read by Django's own duration parser; text it cannot read, as it is)."""
    from django.utils.dateparse import parse_duration

    duration = parse_duration(str(value or ""))
    if not duration:
        return str(value or "")
    hours, rest = divmod(duration.seconds + duration.microseconds / 1e6, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(n, unit) for n, unit in ((duration.days, "day"), (hours, "hour"), (minutes, "minute"), (seconds, "second")) if n]
    return " ".join(f"{n:g} {unit}{'' if n == 1 else 's'}" for n, unit in parts)


@register.filter
def words(value: str) -> str:
    """``new_customers`` → ``New customers``."""
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


HEADLINES = {
    "purchase": [("auc", "AUC"), ("log_loss", "log loss")],
    "orders": [("orders_deviance", "deviance"), ("orders_mae", "MAE"), ("orders_total_error_pct", "total error")],
    "revenue": [("revenue_deviance", "deviance"), ("revenue_mae", "MAE"), ("revenue_total_error_pct", "total error")],
    "sentiment": [("macro_f1", "macro-F1"), ("accuracy", "accuracy")],
}


def _headline(target: str, scores: dict, currency: str = "") -> str:
    parts = [f"{label} {currency + ' ' if currency and is_money_metric(key) else ''}{metric_number(scores[key], key)}"
             for key, label in HEADLINES.get(target, []) if scores.get(key) is not None]
    return " · ".join(parts) or "—"


@register.filter
def is_money_metric(key: str) -> bool:
    """Revenue errors and totals are money (shown with the shop's currency); their shares and
    the deviance are not."""
    return str(key).startswith("revenue_") and not str(key).endswith(("_pct", "_deviance"))


def _currency(context: template.Context) -> str:
    tenant = context.get("tenant")
    return getattr(tenant, "currency", "") or ""


@register.simple_tag(takes_context=True)
def headline(context, version) -> str:  # type: ignore[no-untyped-def]
    """The one or two numbers that matter for a version's target."""
    return _headline(version.target, version.metrics, _currency(context))


@register.simple_tag(takes_context=True)
def target_headline(context, target, scores) -> str:  # type: ignore[no-untyped-def]
    """A target's headline numbers from a set of scores that is no version's (the champions served together)."""
    return _headline(target, scores or {}, _currency(context))


FAMILY_LABELS = {"bgnbd": "BG/NBD", "tabular": "Boosted trees", "transformer": "Transformer", "ngram": "N-gram",
                 "persistence": "Persistence", "majority_class": "Majority class", "served_together": "Champions served together"}


@register.filter
def target_metrics(version):  # type: ignore[no-untyped-def]
    """The version's validation metrics that are about its own target: a family's one fit
    serves purchase, orders and revenue, and each version page shows only its own."""
    def about(key: str) -> bool:
        if version.target in ("orders", "revenue"):
            return key.startswith(f"{version.target}_") or key == "n"
        if version.target == "purchase":
            return not key.startswith(("orders_", "revenue_"))
        return True

    return [(key, value) for key, value in (version.metrics or {}).items() if key not in ("per_class", "candidates") and about(key)]


@register.filter
def family_label(name: str) -> str:
    """A model family or baseline as a page names it: ``bgnbd`` → ``BG/NBD``."""
    return FAMILY_LABELS.get(str(name), str(name))


@register.filter
def strategy_label(name: str) -> str:
    """A model's training strategy as a page names it: ``lora`` → ``adapting the encoder (LoRA)``."""
    from modeling.models import STRATEGY_WORDS

    return STRATEGY_WORDS.get(str(name), str(name))


@register.filter
def metric_number(value, key=""):  # type: ignore[no-untyped-def]
    """A metric as a page shows it: counts and money with thousands separators (485,454.89),
    whole counts without a ".0" (1,849), scores to four decimals (0.8185, 0.9100; 1.0 stays), and a percentage
    (a ``key`` ending in ``_pct``) with its unit after the number (0.51%)."""
    from django.contrib.humanize.templatetags.humanize import intcomma

    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if key in SHARE_METRICS:
        return f"{value:.1%}"
    if str(key).endswith("_deviance"):  # no unit: three decimals everywhere, so two versions' line up
        return intcomma(f"{value:.3f}")
    if isinstance(value, float) and value.is_integer() and abs(value) >= 2:  # a count kept as a float; a score of 1.0 stays one
        value = int(value)
    money = is_money_metric(key)  # to the cent, as money is shown everywhere
    if isinstance(value, float) and not money and not value.is_integer() and abs(value) < 10 and not str(key).endswith("_pct"):
        return f"{value:.4f}"  # scores to four decimals, so a column lines up: 0.9100 beside 0.8694, not 0.91
    shown = intcomma(value) if isinstance(value, int) and not money else intcomma(f"{value:.2f}") if abs(value) >= 1000 or money else value
    return f"{shown}%" if str(key).endswith("_pct") else shown


@register.simple_tag(takes_context=True)
def baseline_headline(context, version) -> str:  # type: ignore[no-untyped-def]
    currency = _currency(context)
    parts = [f"{family_label(name)}: {_headline(version.target, scores, currency)}" for name, scores in (version.baseline_metrics or {}).items() if isinstance(scores, dict)]
    return "; ".join(parts) or "—"


@register.filter
def get(mapping, key):  # type: ignore[no-untyped-def]
    return (mapping or {}).get(key)


SHARE_METRICS = ("positive_rate", "mean_predicted")  # shares of customers, shown in percent

METRIC_LABELS = {
    "n": "Customers", "auc": "AUC", "auc_recent": "AUC, customers who ordered in the last 180 days", "n_recent": "Customers who ordered in the last 180 days", "pr_auc": "PR-AUC", "log_loss": "Log loss", "brier": "Brier score", "positive_rate": "Share who bought",
    "mean_predicted": "Mean predicted probability", "macro_f1": "Macro-F1", "accuracy": "Accuracy", "f1": "F1 per class",
    "orders_deviance": "Orders deviance (Poisson)", "orders_mae": "Orders MAE", "orders_rmse": "Orders RMSE", "orders_total_actual": "Orders, actual total",
    "orders_total_predicted": "Orders, predicted total", "orders_total_error_pct": "Orders, total error",
    "revenue_deviance": "Revenue deviance (Tweedie)", "revenue_mae": "Revenue MAE", "revenue_rmse": "Revenue RMSE", "revenue_total_actual": "Revenue, actual total",
    "revenue_total_predicted": "Revenue, predicted total", "revenue_total_error_pct": "Revenue, total error",
}


@register.filter
def metric_label(key: str, target: str = "") -> str:
    """A metric's name; the sentiment model is scored on reviews, the others on customers."""
    if key == "n" and target == "sentiment":
        return "Reviews"
    return METRIC_LABELS.get(str(key), words(key))
