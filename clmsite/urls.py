from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularRedocView
from rest_framework.routers import SimpleRouter

from campaigns import api as campaigns_api
from campaigns import views as campaign_views
from clmsite import api as clmsite_api
from clmsite import views as site_views
from customers import api as customers_api
from customers import views as customers_views
from modeling import api as modeling_api
from modeling import insight_views
from modeling import views as modeling_views

# The final slash is optional: a client that leaves it off a POST reaches the endpoint
# rather than a redirect that drops the body.
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("customers", customers_api.CustomerViewSet, basename="customer")
router.register("orders", customers_api.OrderViewSet, basename="order")
router.register("products", customers_api.ProductViewSet, basename="product")
router.register("reviews", customers_api.ReviewViewSet, basename="review")
router.register("imports", customers_api.ImportViewSet, basename="import")
router.register("models", modeling_api.ModelVersionViewSet, basename="model")
router.register("jobs", modeling_api.JobViewSet, basename="job")
router.register("predictions", modeling_api.PredictionViewSet, basename="prediction")
router.register("segments", modeling_api.SegmentViewSet, basename="segment")
router.register("insights", modeling_api.InsightViewSet, basename="insight")
router.register("campaigns", campaigns_api.CampaignViewSet, basename="campaign")

urlpatterns = [
    path("", customers_views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", site_views.logout_view, name="logout"),
    path("tenant/switch/", site_views.switch_tenant, name="switch_tenant"),
    path("settings/", site_views.tenant_settings, name="tenant_settings"),
    path("settings/api-keys/", site_views.api_keys, name="api_keys"),
    path("settings/team/", site_views.team_page, name="team"),
    path("settings/team/<int:membership_id>/role/", site_views.change_member_role, name="change_member_role"),
    path("settings/team/<int:membership_id>/remove/", site_views.remove_member, name="remove_member"),
    path("settings/team/<int:membership_id>/invite/", site_views.send_invite, name="send_invite"),
    path("invitations/<int:membership_id>/accept/", site_views.answer_invitation, {"accept": True}, name="accept_invitation"),
    path("invitations/<int:membership_id>/decline/", site_views.answer_invitation, {"accept": False}, name="decline_invitation"),
    path("account/password/", site_views.PasswordChangeView.as_view(), name="password_change"),
    path("account/set-password/<uidb64>/<token>/", site_views.SetPasswordView.as_view(), name="set_password"),
    path("account/forgot-password/", site_views.ForgotPasswordView.as_view(), name="forgot_password"),
    path("account/forgot-password/sent/", TemplateView.as_view(template_name="registration/forgot_password_sent.html"), name="forgot_password_sent"),
    path("settings/api-keys/<int:key_id>/revoke/", site_views.revoke_api_key, name="revoke_api_key"),
    path("customers/", customers_views.customer_list, name="customer_list"),
    path("customers/<int:customer_id>/", customers_views.customer_detail, name="customer_detail"),
    path("imports/", customers_views.imports, name="imports"),
    path("imports/<int:job_id>/", customers_views.import_detail, name="import_detail"),
    path("imports/<int:job_id>/import/", customers_views.import_checked, name="import_checked"),
    path("lifecycle/", insight_views.lifecycle_page, name="lifecycle"),
    path("lifecycle/moves/", insight_views.stage_moves, name="stage_moves"),
    path("segments/", insight_views.segment_list, name="segments"),
    path("segments/preview/", insight_views.segment_preview, name="segment_preview"),
    path("segments/<int:segment_id>/", insight_views.segment_detail, name="segment_detail"),
    path("segments/<int:segment_id>/edit/", insight_views.edit_segment, name="edit_segment"),
    path("segments/<int:segment_id>/delete/", insight_views.delete_segment, name="delete_segment"),
    path("priorities/", insight_views.priorities, name="priorities"),
    path("reviews/", insight_views.reviews_page, name="reviews"),
    path("campaigns/", campaign_views.campaign_list, name="campaigns"),
    path("campaigns/new/", campaign_views.edit_campaign, name="campaign_new"),
    path("campaigns/preview/", campaign_views.campaign_preview, name="campaign_preview"),
    path("campaigns/suggest/<str:action>/", campaign_views.draft_from_suggestion, name="campaign_suggest"),
    path("campaigns/<int:campaign_id>/", campaign_views.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/edit/", campaign_views.edit_campaign, name="campaign_edit"),
    path("campaigns/<int:campaign_id>/launch/", campaign_views.launch_campaign, name="campaign_launch"),
    path("campaigns/<int:campaign_id>/cancel/", campaign_views.cancel_campaign, name="campaign_cancel"),
    path("campaigns/<int:campaign_id>/delete/", campaign_views.delete_campaign, name="campaign_delete"),
    path("campaigns/<int:campaign_id>/rotate-webhook-secret/", campaign_views.rotate_webhook_secret, name="campaign_rotate_secret"),
    path("campaigns/<int:campaign_id>/audience.csv", campaign_views.campaign_audience_csv, name="campaign_audience_csv"),
    path("playbook/", campaign_views.playbook, name="playbook"),
    path("playbook/<int:rule_id>/", campaign_views.edit_rule, name="playbook_rule"),
    path("playbook/new/", campaign_views.edit_rule, name="playbook_new_rule"),
    path("playbook/<int:rule_id>/delete/", campaign_views.delete_rule, name="playbook_delete_rule"),
    path("models/", modeling_views.models_page, name="models"),
    path("models/retrain/", modeling_views.retrain, name="retrain"),
    path("models/score/", modeling_views.score_now, name="score_now"),
    path("models/<int:version_id>/", modeling_views.model_version, name="model_version"),
    path("models/<int:version_id>/promote/", modeling_views.promote, name="promote_version"),
    path("models/rollback/<str:target>/", modeling_views.rollback, name="rollback"),
    path("jobs/<int:job_id>/status/", site_views.job_status, name="job_status"),
    path("jobs/<int:job_id>/cancel/", site_views.cancel_job, name="cancel_job"),
    path("healthz", site_views.healthz, name="healthz"),
    # Pages that do not link an icon (the API docs) ask for this one.
    path("favicon.ico", site_views.favicon),
    re_path(r"^api/v1/shop/?$", clmsite_api.ShopViewSet.as_view({"get": "retrieve"}), name="api-shop"),
    path("api/v1/", include(router.urls)),
    re_path(r"^api/schema/?$", site_views.SchemaView.as_view(), name="api_schema"),
    re_path(r"^api/docs/?$", SpectacularRedocView.as_view(url_name="api_schema"), name="api_docs"),
    # Any other path under /api/ (an unknown endpoint, an id the lookup refuses) answers the
    # API's JSON 404, DEBUG or not, rather than Django's HTML page, which under DEBUG lists
    # every URL. Exempt from CSRF so that a POST gets the 404 too, not a CSRF refusal.
    re_path(r"^api/", csrf_exempt(site_views.not_found)),
    path("admin/", admin.site.urls),
]

handler400 = "clmsite.views.bad_request"
handler404 = "clmsite.views.not_found"
handler500 = "clmsite.views.server_error"
