"""Site-wide pages: tenant switching, API keys, job status, health, error pages."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import zoneinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required as django_login_required
from django.contrib.auth.views import redirect_to_login
from django.core.mail import send_mail
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import defaults
from django.views.decorators.http import require_POST
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer

from clmsite.api import ContentNegotiation
from clmsite.datacache import bump_data_version
from clmsite.models import ApiKey, Role
from clmsite.services import (
    MembershipRefused,
    access_events,
    counts_as_owner,
    do_accept_invitation,
    do_change_member_role,
    do_create_api_key,
    do_decline_invitation,
    do_invite_member,
    do_make_invite_link,
    do_remove_member,
    do_revoke_api_key,
    get_api_key,
    grantable_roles,
    invite_path,
    is_pending,
    link_tokens,
    may_send_invite,
    new_username_problem,
    record_access,
    team,
)
from clmsite.templatetags.clm import SHOP_FIELD
from clmsite.tenancy import SESSION_TENANT_KEY
from modeling import jobs
from modeling.models import Job

log = logging.getLogger("clm.web")


def login_required(view: Any) -> Any:
    """Django's ``login_required``, and for a form posted after the session ended: the way
    back after logging in is the page the form was on (the form's own address only takes a
    POST, so returning there would be a bare 405), and the login page says that nothing was
    saved or started."""
    guarded = django_login_required(view)

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method != "POST" or request.user.is_authenticated:
            return guarded(request, *args, **kwargs)
        referer = request.headers.get("Referer", "")
        back = urlsplit(referer)
        same_site = url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}, require_https=request.is_secure())
        page = (back.path + (f"?{back.query}" if back.query else "")) if same_site and back.path else "/"
        messages.warning(request, "Your session ended, so nothing was saved or started. Log in and do it again.")
        return redirect_to_login(page)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def tenant_required(minimum_role: str = Role.VIEWER) -> Any:
    """A page of the active tenant. No tenant, or a role below ``minimum_role``, is a 404:
    a page the user may not see does not exist for them."""

    def decorator(view: Any) -> Any:
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            membership = getattr(request, "membership", None)
            if membership is None:
                return render(request, "no_tenant.html", status=404)
            if not membership.can(minimum_role):
                raise Http404("Not found")
            posted = foreign_shop(request, request.POST) if request.method == "POST" else None
            if posted is not None:
                return _other_shop(request, posted)
            return view(request, *args, **kwargs)

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped

    return decorator


def foreign_shop(request: HttpRequest, data: Any) -> str | None:
    """The shop a form carries ({% shop_guard %}) when it is not the request's own: a form
    opened in one shop and sent after a switch to another in another tab. None otherwise."""
    posted = data.get(SHOP_FIELD)
    return posted if posted is not None and posted != str(request.tenant.pk) else None  # type: ignore[attr-defined]


def stale_preview(request: HttpRequest) -> JsonResponse | None:
    """The answer of a live preview asked by a form left open in another shop's tab (it must
    not count this shop's customers); None when the form is the request's shop's."""
    if foreign_shop(request, request.GET) is None:
        return None
    return JsonResponse({"stale": f"This form was opened in another shop; you have switched to {request.tenant.name} since. Reload the page."})  # type: ignore[attr-defined]


def not_counted_note(form: forms.Form, names: Any) -> str:
    """A live preview's word on the fields among ``names`` that its form refused: the count
    leaves them out, and says so rather than mislead."""
    refused = [f"{form[name].label}: {' '.join(form.errors[name]).rstrip('.')}" for name in names if name in form.errors]  # "100.;" read as a typo
    return f"Not counted until corrected: {'; '.join(refused)}." if refused else ""


def _other_shop(request: HttpRequest, posted: str) -> HttpResponse:
    """A form opened in one shop, posted after the user switched to another (in another
    tab): saving it would put one shop's data into the other, so nothing is saved."""
    opened = next((m.tenant.name for m in getattr(request, "memberships", []) if str(m.tenant_id) == posted), "another shop")
    messages.error(request, f"Nothing was saved or started: that form was opened in {opened}, and you have since switched to "
                            f"{request.tenant.name} (in another tab or window). Switch back to {opened} and do it again there.")  # type: ignore[attr-defined]
    return redirect("dashboard")


@login_required
@require_POST
def switch_tenant(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("tenant_id", "")
    memberships = getattr(request, "memberships", [])
    match = next((m for m in memberships if str(m.tenant_id) == wanted), None)
    if match is None:
        raise Http404("Not found")
    request.session[SESSION_TENANT_KEY] = match.tenant_id
    messages.success(request, f"Switched to {match.tenant.name}" + ("" if match.tenant.name.endswith((".", "!", "?")) else "."))  # "Demo Outdoor Co.", not "Co.."
    return redirect("dashboard")


NEW_KEY_SESSION = "clm_new_api_key"


API_KEY_NAME_MAX = ApiKey._meta.get_field("name").max_length


@tenant_required(Role.ADMIN)
def api_keys(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    if request.method == "POST":
        role = request.POST.get("role", Role.ANALYST)
        name = request.POST.get("name", "").strip()
        if not name:
            messages.error(request, "Give the key a name that says where it is used (e.g. Shopify sync): the list and the audit show it.")
        elif len(name) > API_KEY_NAME_MAX:
            messages.error(request, f"The name has {len(name):,} characters; keep it to {API_KEY_NAME_MAX}.")
        elif role not in Role.values:
            messages.error(request, "Choose a valid role.")
        elif role == Role.OWNER and not request.membership.can(Role.OWNER):  # type: ignore[attr-defined]
            messages.error(request, "Only an owner can create owner keys.")
        else:
            key, raw = do_create_api_key(tenant, role=role, name=name, acting_user=request.user)
            messages.success(request, f"Created key '{key.name}'. Copy it now: it will not be shown again.")
            # Shown by the page the browser is sent to, once: reloading it creates no second key.
            request.session[NEW_KEY_SESSION] = raw
        return redirect("api_keys")
    new_key = request.session.pop(NEW_KEY_SESSION, None)
    keys = ApiKey.objects.filter(tenant=tenant).select_related("created_by")
    # The roles this member may give a key, as on the team page (an admin was offered Owner, then refused).
    grantable = grantable_roles(request.membership.role)  # type: ignore[attr-defined]
    roles = [(value, label) for value, label in Role.choices if value in grantable]
    return render(request, "api_keys.html", {"keys": keys, "new_key": new_key, "roles": roles, "name_max": API_KEY_NAME_MAX,
                                             "is_owner": request.membership.can(Role.OWNER)})  # type: ignore[attr-defined]


@tenant_required(Role.ADMIN)
@require_POST
def revoke_api_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_api_key(request.tenant, key_id)  # type: ignore[attr-defined]
    if key.role == Role.OWNER and not request.membership.can(Role.OWNER):  # type: ignore[attr-defined]
        messages.error(request, "Only an owner can revoke an owner key, as only an owner can create one.")
        return redirect("api_keys")
    key = do_revoke_api_key(request.tenant, key.pk, acting_user=request.user)  # type: ignore[attr-defined]
    messages.success(request, f"Revoked key '{key.name}'.")
    return redirect("api_keys")


def _job_payload(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "state": job.state,
        "state_label": job.state_label,
        "progress": job.progress,
        "percent": job.percent,
        "message": job.message or _waiting(job),
        "finished": job.is_finished,
        "error_count": job.result.get("error_count", 0),
    }


def _waiting(job: Job) -> str:
    """What a queued job waits for: the shop's own jobs ahead of it, or a free worker."""
    if job.state != Job.State.QUEUED:
        return ""
    ahead = Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING], created_at__lt=job.created_at).values_list("kind", flat=True)
    kinds = sorted({str(Job.Kind(kind).label).lower() for kind in ahead})
    if kinds:
        n = len(ahead)
        return f"Waiting for {n} other job{'s' if n > 1 else ''} of this shop to finish ({', '.join(kinds)})."
    return "Waiting for a free worker."


@tenant_required()
def job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404("Not found")
    return JsonResponse(_job_payload(job))


@tenant_required(Role.ANALYST)
@require_POST
def cancel_job(request: HttpRequest, job_id: int) -> HttpResponse:
    if not Job.objects.filter(pk=job_id).exists():
        raise Http404("Not found")
    try:
        job = jobs.do_request_cancel(request.tenant, job_id, role=request.membership.role)  # type: ignore[attr-defined]
    except (jobs.CancelNotAllowed, jobs.JobFinished) as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Cancellation requested for job {job.pk}.")
        record_access(request.tenant, "job_cancelled", f"{job.get_kind_display()} #{job.pk}", request.user)  # type: ignore[attr-defined]
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = "dashboard"
    return redirect(target)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        # Byte for byte the body and caching of a missing id's 404 (DRF writes compact JSON).
        response = JsonResponse({"detail": "Not found."}, status=404, json_dumps_params={"separators": (",", ":")})
        response["Cache-Control"] = "private, no-store"
        patch_vary_headers(response, ["Accept"])
        return response
    return render(request, "404.html", status=404)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A request Django refuses before any view (a Host header not in ALLOWED_HOSTS, a malformed
    cookie): JSON for the API, whose clients read every error body as JSON; Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request: the server refused its headers (a Host it does not serve, say)."}, status=400)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal error. It has been logged."}, status=500)
    return render(request, "500.html", status=500)


ZONE_REGIONS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")


@functools.lru_cache(maxsize=1)
def _listed_zones() -> frozenset[str] | None:
    """The zones the time zone database lists by country (``zone.tab``): its current names, not
    the old spellings it keeps as links (Asia/Calcutta for Asia/Kolkata, Europe/Kiev). None
    where the system has no such file: then every zone of a region is offered."""
    for root in zoneinfo.TZPATH:
        path = Path(root) / "zone.tab"
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return frozenset(line.split("\t")[2] for line in lines if line.strip() and not line.startswith("#") and line.count("\t") >= 2)
    return None


def time_zone_choices() -> list[Any]:
    """The zones by region, each with its offset now ("Los Angeles (UTC−08:00)"), UTC first.
    The old aliases (US/Pacific, EST, Etc/GMT+8, Asia/Calcutta) are left out: each is a
    region's zone by another name. A shop saved with one keeps it (``TenantSettingsForm``)."""
    now = dt.datetime.now(dt.UTC)
    listed = _listed_zones()
    by_region: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(zoneinfo.available_timezones()):
        region, _, place = name.partition("/")
        if region in ZONE_REGIONS and place and (listed is None or name in listed):
            offset = now.astimezone(zoneinfo.ZoneInfo(name)).strftime("%z")
            by_region.setdefault(region, []).append((name, f"{place.replace('_', ' ').replace('/', ' / ')} (UTC{offset[0].replace('-', '−')}{offset[1:3]}:{offset[3:]})"))
    return [("UTC", "UTC"), *by_region.items()]


class TenantSettingsForm(forms.Form):
    name = forms.CharField(max_length=200, label="Shop name")
    currency = forms.CharField(max_length=3, help_text="ISO 4217 code, such as USD or EUR: the currency the shop's amounts are in. Changing it converts nothing; "
                                                       "orders imported with another currency stay as they are")
    time_zone = forms.ChoiceField(choices=time_zone_choices, label="Time zone", required=False,
                                  help_text="the pages show the times of orders, reviews, imports, jobs and campaigns in it and chart months by it, and the "
                                  "models count the shop's days in it (stage dates, as-of dates, days since an order) from the next scoring; "
                                  "the API's times keep UTC, and the customer list's CSV writes each time with its offset from UTC")
    horizon_days = forms.IntegerField(min_value=7, max_value=730, label="Prediction horizon (days)",
                                      help_text="how far ahead the predictions look: the chance to buy again within this many days")
    high_tier_percent = forms.IntegerField(min_value=1, max_value=50, label="High value: top % of customers",
                                           help_text="the customers with the highest predicted value, as a percentage of all scored customers")
    low_tier_percent = forms.IntegerField(min_value=5, max_value=95, label="Low value: bottom % of customers",
                                          help_text="the customers with the lowest predicted value; those between are medium value")
    retrain_weekday = forms.TypedChoiceField(coerce=int, label="Retrain on", choices=[(i, d) for i, d in enumerate(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])])
    retrain_hour = forms.IntegerField(min_value=0, max_value=23, label="Retrain hour", help_text="0–23, in the shop's time zone: the weekly retraining starts then")
    score_hour = forms.IntegerField(min_value=0, max_value=23, label="Scoring hour", help_text="0–23, in the shop's time zone: every customer is scored again each night at this hour. "
                                    "Where no scheduler runs (a trial install), retrain and score from the Models page")

    def clean_currency(self) -> str:
        from customers.services.parsing import FieldError, parse_currency

        try:
            return parse_currency(self.cleaned_data["currency"])
        except FieldError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("high_tier_percent") is not None and data.get("low_tier_percent") is not None and data["high_tier_percent"] + data["low_tier_percent"] >= 100:
            raise forms.ValidationError("The top and bottom percentages must add up to less than 100, leaving some customers medium value.")
        return data


# When a changed setting shows in what the models made (the rest shows at once).
SETTINGS_TAKE_EFFECT = {
    "horizon_days": "the horizon applies from the next training",
    "high_tier_percent": "value tiers follow from the next scoring",
    "low_tier_percent": "value tiers follow from the next scoring",
    "time_zone": "pages show times in the new time zone now, and stage and as-of dates count its days from the next scoring",
    # Reasons, descriptions and offers are written by the scoring, in the currency it had.
    "currency": "money shows in the new currency now; the actions' reasons and offers and the segments' descriptions name it from the next scoring",
}
# Said when the time zone changes in a shop with data: times without an offset were read on the old clock.
ZONE_CHANGED_WITH_DATA = ("Times that files or API rows gave without a UTC offset were read in {old} when they were imported and stay as "
                          "read: import those files again to read them in {new} (times with an offset or a Z are not affected).")


@tenant_required(Role.ADMIN)
def tenant_settings(request: HttpRequest) -> HttpResponse:
    from customers.models import Order, Review
    from modeling.scoring import tier_quantiles
    from modeling.services import DEFAULT_SCHEDULE

    tenant = request.tenant  # type: ignore[attr-defined]
    tiers = tier_quantiles(tenant)
    schedule = {**DEFAULT_SCHEDULE, **tenant.settings.get("schedule", {})}
    initial = {"name": tenant.name, "currency": tenant.currency, "time_zone": tenant.time_zone, "horizon_days": tenant.horizon_days,
               "high_tier_percent": round(100 * (1 - tiers["high"])), "low_tier_percent": round(100 * tiers["medium"]), **schedule}
    form = TenantSettingsForm(request.POST or None, initial=initial)
    if not any(tenant.time_zone == value for _, group in form.fields["time_zone"].choices[1:] for value, _ in group) and tenant.time_zone != "UTC":
        form.fields["time_zone"].choices = [(tenant.time_zone, tenant.time_zone), *form.fields["time_zone"].choices]  # an alias saved before
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        changed = [name for name in form.changed_data if name in SETTINGS_TAKE_EFFECT]
        old_zone = tenant.time_zone
        was = {name: initial.get(name) for name in form.changed_data}
        tenant.name, tenant.currency, tenant.horizon_days, tenant.time_zone = data["name"], data["currency"].upper(), data["horizon_days"], data["time_zone"] or tenant.time_zone
        tenant.settings = {
            **tenant.settings,
            "value_tier_quantiles": {"high": round(1 - data["high_tier_percent"] / 100, 4), "medium": round(data["low_tier_percent"] / 100, 4)},
            "schedule": {k: data[k] for k in ("retrain_weekday", "retrain_hour", "score_hour")},
        }
        tenant.save()
        if was:
            record_access(tenant, "settings_changed", "; ".join(f"{form[name].label or name}: {was[name]} → {data[name]}" for name in was), request.user)
        bump_data_version(tenant.pk)  # the dashboard's cached figures carry the currency, and months by the time zone
        later = "; ".join(dict.fromkeys(SETTINGS_TAKE_EFFECT[name] for name in changed))  # only what this save changed, each once
        messages.success(request, f"Settings saved. {later[0].upper()}{later[1:]}." if later else "Settings saved.")
        if tenant.time_zone != old_zone and (Order.objects.exists() or Review.objects.exists()):
            messages.warning(request, ZONE_CHANGED_WITH_DATA.format(old=old_zone, new=tenant.time_zone))
        return redirect("tenant_settings")
    return render(request, "tenant_settings.html", {"form": form})


# --- The team -----------------------------------------------------------------------------

NEW_INVITE_SESSION = "clm_new_invite"
ROLE_HELP = {
    Role.VIEWER: "sees every page and export",
    Role.ANALYST: "also imports and edits data, saves segments, drafts campaigns and scores",
    Role.ADMIN: "also manages the team, API keys and settings, trains, promotes and rolls back models, and launches campaigns",
    Role.OWNER: "also makes and removes owners",
}


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="an existing login is invited, and joins when it accepts; a new name becomes a login with an invite link")
    email = forms.EmailField(required=False, max_length=254, help_text="for a new login only")
    role = forms.ChoiceField(choices=Role.choices)

    def __init__(self, *args: Any, roles: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(value, label) for value, label in Role.choices if value in roles]

    def clean_username(self) -> str:
        """Checked with the other fields, so that one answer names every problem, beside its field."""
        username = get_user_model().normalize_username(self.cleaned_data["username"].strip())
        problem = new_username_problem(username)
        if problem:
            raise forms.ValidationError(problem)
        return username


def _remember_invite(request: HttpRequest, user: Any, path: str) -> str:
    """The invite link is shown once, by the page the browser is sent to (as a new API key is),
    and emailed to the login's address when it has one. Returns what became of the email."""
    url = request.build_absolute_uri(path)
    request.session[NEW_INVITE_SESSION] = {"username": user.get_username(), "url": url}
    shop = request.tenant.name  # type: ignore[attr-defined]
    if user.email and settings.EMAIL_BACKEND.endswith(".console.EmailBackend"):  # no EMAIL_HOST: it would only reach the server's log
        return " Email is not set up on this server, so it was not emailed: send it yourself."
    sent = _email_login(user, f"You are invited to {shop}", f"{request.user.get_username()} added you to the team of {shop}. Open this link to "
                 f"choose your password; it then logs you in:\n\n{url}\n\nIt works once, for three days.")
    if sent is None:
        return ""
    return f" It has also been emailed to {user.email}." if sent else f" It could not be emailed to {user.email} just now: send it yourself."


def _email_login(user: Any, subject: str, text: str) -> bool | None:
    """Email a login, if it has an address: True sent, False the mail server failed, None no address."""
    if not user.email:
        return None
    try:
        send_mail(subject, f"Hello {user.get_username()},\n\n{text}\n", None, [user.email])
    except OSError:  # smtplib's errors are OSErrors: the mail server is down or refused us
        log.exception("email to a login not sent")
        return False
    return True


@tenant_required(Role.ADMIN)
def team_page(request: HttpRequest) -> HttpResponse:
    tenant, acting = request.tenant, request.membership  # type: ignore[attr-defined]
    roles = grantable_roles(acting.role)
    form = MemberForm(request.POST or None, roles=roles, initial={"role": Role.VIEWER})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            membership, needs_link = do_invite_member(tenant, data["username"], data["role"], email=data["email"], acting_role=acting.role, acting_user=request.user)
        except MembershipRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            name, role = membership.user.get_username(), membership.get_role_display()
            if needs_link:
                emailed = _remember_invite(request, membership.user, invite_path(membership.user))
                messages.success(request, f"Added {name} as {role}. Send them the invite link below: they choose their password there.{emailed}")
            else:
                _email_login(membership.user, f"{tenant.name} invites you", f"{request.user.get_username()} invites you to the team of {tenant.name} "
                      f"as {role}. Log in to accept or decline: the invitation is at the top of every page.")
                messages.success(request, f"Invited {name} as {role}. They have a login already, so they join once they accept: the invitation waits "
                                          "at the top of their pages. Until then they see nothing of this shop, and you see only their name.")
            return redirect("team")
    members = team(tenant)
    owners = sum(counts_as_owner(member) for member in members)
    for member in members:
        member.sole_owner = counts_as_owner(member) and owners == 1  # type: ignore[attr-defined]
        member.pending = is_pending(member.user)  # type: ignore[attr-defined]
        member.may_invite = member.pending and may_send_invite(member)  # type: ignore[attr-defined]
        member.manageable = acting.role == Role.OWNER or member.role != Role.OWNER  # type: ignore[attr-defined]
    return render(request, "team.html", {
        "form": form, "members": members, "roles": form.fields["role"].choices,
        "role_help": [(label, ROLE_HELP[Role(value)]) for value, label in Role.choices][::-1],
        "invite": request.session.pop(NEW_INVITE_SESSION, None), "invite_days": settings.PASSWORD_RESET_TIMEOUT // 86400,
        "events": access_events(tenant),
    }, status=400 if form.errors else 200)


@tenant_required(Role.ADMIN)
@require_POST
def change_member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    tenant, acting = request.tenant, request.membership  # type: ignore[attr-defined]
    try:
        membership = do_change_member_role(tenant, membership_id, request.POST.get("role", ""), acting_role=acting.role, acting_user=request.user)
    except MembershipRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("team")
    messages.success(request, f"{membership.user.get_username()} is now {membership.get_role_display()} in {tenant.name.rstrip('.')}.")
    # A member who gave up managing the team has no team page to go back to.
    return redirect("team" if membership.user_id != request.user.pk or membership.can(Role.ADMIN) else "dashboard")


@tenant_required(Role.ADMIN)
@require_POST
def remove_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    tenant, acting = request.tenant, request.membership  # type: ignore[attr-defined]
    try:
        membership = do_remove_member(tenant, membership_id, acting_role=acting.role, acting_user=request.user)
    except MembershipRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("team")
    who = "You have left" if membership.user_id == request.user.pk else f"Removed {membership.user.get_username()} from"
    messages.success(request, f"{who} {tenant.name.rstrip('.')}. The login itself stays, with any other shops it belongs to.")
    return redirect("dashboard" if membership.user_id == request.user.pk else "team")


@tenant_required(Role.ADMIN)
@require_POST
def send_invite(request: HttpRequest, membership_id: int) -> HttpResponse:
    try:
        membership, path = do_make_invite_link(request.tenant, membership_id, acting_role=request.membership.role, acting_user=request.user)  # type: ignore[attr-defined]
    except MembershipRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("team")
    emailed = _remember_invite(request, membership.user, path)
    messages.success(request, f"A new invite link for {membership.user.get_username()}. Links made before it no longer work.{emailed}")
    return redirect("team")


@login_required
@require_POST
def answer_invitation(request: HttpRequest, membership_id: int, accept: bool) -> HttpResponse:
    if accept:
        membership = do_accept_invitation(request.user, membership_id)
        request.session[SESSION_TENANT_KEY] = membership.tenant_id
        messages.success(request, f"Welcome to {membership.tenant.name}: you are in its team as {membership.get_role_display()}.")
    else:
        membership = do_decline_invitation(request.user, membership_id)
        messages.success(request, f"Declined the invitation of {membership.tenant.name}.")
    return redirect("dashboard")


OLD_PASSWORD_TRIES = 5


class PasswordChangeView(auth_views.PasswordChangeView):
    """The form checks the old password itself, past django-axes: after a few wrong ones in a
    quarter of an hour the session is logged out, so a borrowed session cannot guess it while
    the login page's lockout counts the guesses from there on."""

    template_name = "registration/password_change.html"
    success_url = reverse_lazy("dashboard")

    def form_invalid(self, form: Any) -> HttpResponse:
        from django.contrib.auth import logout
        from django.core.cache import cache

        if "old_password" in form.errors:
            key = f"clm:old-password-tries:{self.request.user.pk}"
            if _count_attempt(key, seconds=900) >= OLD_PASSWORD_TRIES:
                cache.delete(key)
                logout(self.request)
                messages.error(self.request, "Too many wrong passwords: you have been logged out. Log in again to change your password.")
                return redirect("login")
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Your password is changed. Your other sessions have been logged out.")
        return super().form_valid(form)


RESET_EMAILS_PER_HOUR = 3


def _within_reset_limit(request: HttpRequest, email: str) -> bool:
    """At most a few reset emails an hour per address and per client: the form answers the
    same whether or not an account uses the address, so it must not become a way to flood one."""
    import hashlib

    from clmsite.client_ip import client_ip

    allowed = True
    for who in (f"email:{email.strip().lower()}", f"ip:{client_ip(request)}"):
        tries = _count_attempt("clm:password-reset:" + hashlib.sha256(who.encode()).hexdigest(), seconds=3600)
        allowed = tries <= RESET_EMAILS_PER_HOUR * (1 if who.startswith("email:") else 3) and allowed
    return allowed


def _count_attempt(key: str, *, seconds: int) -> int:
    """One more attempt under ``key``; the attempts counted in the ``seconds`` since the first."""
    from django.core.cache import cache

    cache.add(key, 0, timeout=seconds)
    return cache.incr(key)


class ForgotPasswordView(auth_views.PasswordResetView):
    """Emails a set-password link to the logins with that address and a password (an invited
    login that has not used its invite gets none: its invite link is the way in). The answer is
    the same whether or not an account uses the address."""

    template_name = "registration/forgot_password.html"
    token_generator = link_tokens
    email_template_name = "registration/reset_email.txt"
    subject_template_name = "registration/reset_subject.txt"
    success_url = reverse_lazy("forgot_password_sent")

    def form_valid(self, form: Any) -> HttpResponse:
        # A failed send is logged by Django's form and answered like a sent one, which keeps
        # the addresses secret; the page tells the user whom to ask when nothing arrives.
        if not _within_reset_limit(self.request, form.cleaned_data["email"]):
            return redirect(self.success_url)
        return super().form_valid(form)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """Where an invited member chooses their password, from the link the team page made. The
    view moves the token out of the address (into the session) before showing the form."""

    template_name = "registration/set_password.html"
    token_generator = link_tokens
    success_url = reverse_lazy("dashboard")
    post_reset_login = True
    # django-axes' backend wants a request to authenticate; this login needs none.
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, f"Welcome, {form.user.get_username()}: your password is set and you are logged in.")
        return super().form_valid(form)


def favicon(request: HttpRequest) -> HttpResponse:
    """For pages that link no icon (the API docs). Resolved per request: the static files'
    manifest (their hashed names) exists only once collectstatic has run."""
    from django.templatetags.static import static

    return HttpResponsePermanentRedirect(static("favicon.svg"))


def logout_view(request: HttpRequest) -> HttpResponse:
    """Log out on POST, as the header's button does (a link could log anyone out from another
    site); a typed or bookmarked GET goes to the login page, or home while logged in, rather
    than an empty 405."""
    if request.method == "POST":
        return auth_views.LogoutView.as_view()(request)
    return redirect("dashboard" if request.user.is_authenticated else "login")


class ActionPageMiddleware:
    """A page address that only takes its form's POST (draft, launch, save), opened as a link:
    a page that says so, with the way back, rather than the blank 405 that require_POST
    answers. The API's 405 stays the JSON its clients read."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 405 and not response.content and not request.path.startswith("/api/"):
            page = render(request, "405.html", status=405)
            page["Allow"] = response.get("Allow", "")
            return page
        return response


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema (YAML, or JSON with ``?format=json``); an error, such as an unknown
    ``?format=xml``, is JSON like every other error of the API, not a YAML document."""

    content_negotiation_class = ContentNegotiation  # an unknown ?format= is a 400 naming format

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.status_code >= 400:
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

