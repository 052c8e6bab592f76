"""Base fixtures: two tenants with look-alike data, an owner, a member and an outsider.

Alice owns shop A; Bob is a viewer in shop A; Charlie owns shop B and must never see
anything of shop A (after healthchecks' ``hc/test.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from clmsite.models import Role, Tenant
from clmsite.services import do_add_member, do_create_api_key
from clmsite.tenancy import tenant_context


@pytest.fixture(autouse=True)
def _eager_tasks(settings: Any, tmp_path: Any) -> None:
    # Tests run tasks in-process unless a test starts a real worker itself.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.JOBS_IN_THREAD = False
    settings.UPLOAD_DIR = tmp_path / "uploads"
    from django.core.cache import cache

    from clmsite.celery import app

    app.conf.task_always_eager = True
    # Cached aggregates are keyed by tenant id, which a fresh test database reuses.
    cache.clear()


@pytest.fixture
def tenant_a(db: Any) -> Tenant:
    return Tenant.objects.create(slug="shop-a", name="Shop A")


@pytest.fixture
def tenant_b(db: Any) -> Tenant:
    return Tenant.objects.create(slug="shop-b", name="Shop B")


@pytest.fixture
def alice(django_user_model: Any, tenant_a: Tenant) -> Any:
    user = django_user_model.objects.create_user("alice", password="alice-pass-123")
    do_add_member(tenant_a, user, Role.OWNER)
    return user


@pytest.fixture
def bob(django_user_model: Any, tenant_a: Tenant) -> Any:
    user = django_user_model.objects.create_user("bob", password="bob-pass-123")
    do_add_member(tenant_a, user, Role.VIEWER)
    return user


@pytest.fixture
def charlie(django_user_model: Any, tenant_b: Tenant) -> Any:
    user = django_user_model.objects.create_user("charlie", password="charlie-pass-123")
    do_add_member(tenant_b, user, Role.OWNER)
    return user


def api_client_for(tenant: Tenant, role: str = Role.ANALYST) -> APIClient:
    _, raw = do_create_api_key(tenant, role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api_a(tenant_a: Tenant) -> APIClient:
    return api_client_for(tenant_a, Role.ADMIN)


@pytest.fixture
def api_b(tenant_b: Tenant) -> APIClient:
    return api_client_for(tenant_b, Role.ADMIN)


def shared_database_url() -> str:
    """The URL of pytest's PostgreSQL test database, for processes the test starts (a
    worker, a CLI run). SQLite's in-memory test database cannot be shared: skip there."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL) to share the test database with a subprocess")
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def write_csv(path: Any, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


ORDERS_A = """customer_id,order_id,ordered_at,amount,quantity,sku,product_name,category
c1,o1,2024-01-05,20.00,2,s1,Trail shoe,Shoes
c1,o1,2024-01-05,5.50,1,s2,Wool sock,Socks
c1,o2,2024-03-01T10:00:00Z,40.00,1,s1,Trail shoe,Shoes
c2,o3,20240210,13.37,1,s2,Wool sock,Socks
"""
REVIEWS_A = """customer_id,review_id,created_at,text,rating,sku
c1,r1,2024-01-20,Great fit but slow delivery,4,s1
c2,r2,2024-02-20,Socks wore out after a week,1,s2
"""


@pytest.fixture
def shop_a_data(tenant_a: Tenant, tmp_path: Any) -> Tenant:
    from customers.services.imports import import_csv

    assert import_csv(tenant_a, "orders", write_csv(tmp_path / "a-orders.csv", ORDERS_A)).ok
    assert import_csv(tenant_a, "reviews", write_csv(tmp_path / "a-reviews.csv", REVIEWS_A)).ok
    return tenant_a


@pytest.fixture
def shop_b_data(tenant_b: Tenant, tmp_path: Any) -> Tenant:
    """Look-alike data: the same external ids as shop A, other values."""
    from customers.services.imports import import_csv

    orders = ORDERS_A.replace("Trail shoe", "Road shoe").replace("20.00", "99.00")
    assert import_csv(tenant_b, "orders", write_csv(tmp_path / "b-orders.csv", orders)).ok
    assert import_csv(tenant_b, "reviews", write_csv(tmp_path / "b-reviews.csv", REVIEWS_A.replace("slow", "fast"))).ok
    return tenant_b


def scoped(tenant: Tenant) -> Any:
    return tenant_context(tenant)


__all__ = ["api_client_for", "scoped", "settings", "shared_database_url", "write_csv"]
