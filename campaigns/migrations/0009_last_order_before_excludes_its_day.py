# "last_order_before" now excludes its day everywhere, as the API's ?last_order_before= always
# did (saved segments and campaign filters included it). Stored filters move one day later so
# that each keeps selecting the customers it selected: saved segments and campaigns not launched
# yet (a launched campaign's audience is frozen).
import datetime as dt

from django.db import migrations


def _shift(filters, days):
    value = (filters or {}).get("last_order_before")
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
    return {**filters, "last_order_before": (day + dt.timedelta(days=days)).isoformat()}


def shift(days):
    def run(apps, schema_editor):
        Segment = apps.get_model("modeling", "Segment")
        Campaign = apps.get_model("campaigns", "Campaign")
        for model, rows in ((Segment, Segment._base_manager.filter(kind="saved")), (Campaign, Campaign._base_manager.filter(state__in=["draft", "scheduled"]))):
            for pk, filters in rows.filter(filters__has_key="last_order_before").values_list("pk", "filters"):
                moved = _shift(filters, days)
                if moved is not None:
                    model._base_manager.filter(pk=pk).update(filters=moved)
    return run


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0008_campaign_skip_running"), ("modeling", "0011_modelversion_rolled_back_at")]

    operations = [migrations.RunPython(shift(1), shift(-1))]
