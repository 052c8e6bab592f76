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
def words(value: str) -> str:
    """``new_customers`` → ``New customers``."""
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


HEADLINES = {
    "purchase": [("auc", "AUC"), ("log_loss", "log loss")],
    "orders": [("orders_mae", "MAE"), ("orders_total_error_pct", "total error %")],
    "revenue": [("revenue_mae", "MAE"), ("revenue_total_error_pct", "total error %")],
    "sentiment": [("macro_f1", "macro-F1"), ("accuracy", "accuracy")],
}


def _headline(target: str, scores: dict) -> str:
    parts = [f"{label} {scores[key]}" for key, label in HEADLINES.get(target, []) if scores.get(key) is not None]
    return " · ".join(parts) or "—"


@register.simple_tag
def headline(version) -> str:  # type: ignore[no-untyped-def]
    """The one or two numbers that matter for a version's target."""
    return _headline(version.target, version.metrics)


@register.simple_tag
def baseline_headline(version) -> str:  # type: ignore[no-untyped-def]
    parts = [f"{name}: {_headline(version.target, scores)}" for name, scores in (version.baseline_metrics or {}).items() if isinstance(scores, dict)]
    return "; ".join(parts) or "—"


@register.filter
def get(mapping, key):  # type: ignore[no-untyped-def]
    return (mapping or {}).get(key)


METRIC_LABELS = {
    "n": "Customers", "auc": "AUC", "pr_auc": "PR-AUC", "log_loss": "Log loss", "brier": "Brier score", "positive_rate": "Share who bought",
    "mean_predicted": "Mean predicted probability", "macro_f1": "Macro-F1", "accuracy": "Accuracy", "f1": "F1 per class",
    "orders_mae": "Orders MAE", "orders_rmse": "Orders RMSE", "orders_total_actual": "Orders, actual total",
    "orders_total_predicted": "Orders, predicted total", "orders_total_error_pct": "Orders, total error %",
    "revenue_mae": "Revenue MAE", "revenue_rmse": "Revenue RMSE", "revenue_total_actual": "Revenue, actual total",
    "revenue_total_predicted": "Revenue, predicted total", "revenue_total_error_pct": "Revenue, total error %",
}


@register.filter
def metric_label(key: str) -> str:
    return METRIC_LABELS.get(str(key), words(key))
