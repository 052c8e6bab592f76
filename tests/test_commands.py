"""Operator commands and settings profiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clmsite.models import ApiKey, Membership, Tenant
from tests.conftest import shared_database_url

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def test_create_tenant_with_owner(django_user_model, capsys):
    django_user_model.objects.create_user("olga", password="pw-123456")

    call_command("create_tenant", "olgas-shop", "--name", "Olga's Shop", "--owner", "olga")

    tenant = Tenant.objects.get(slug="olgas-shop")
    assert tenant.name == "Olga's Shop"
    assert Membership.objects.get(tenant=tenant).role == "owner"
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "olgas-shop", "--name", "Again")


def test_create_api_key_prints_the_key_as_the_last_word(tenant_a, capsys):
    call_command("create_api_key", "--tenant", "shop-a", "--role", "viewer")

    raw = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    key = ApiKey.objects.get(tenant=tenant_a)
    assert key.role == "viewer" and key.matches(raw)


def test_create_api_key_rejects_unknown_tenant():
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        call_command("create_api_key", "--tenant", "nope")


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120, check=False)


def test_production_profile_passes_check_deploy():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env={"DJANGO_SETTINGS_MODULE": "clmsite.settings_production", "SECRET_KEY": "x" * 20 + "-production-secret-key-for-the-check-" + "y" * 20, "ALLOWED_HOSTS": "shop.example.com"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_profile_refuses_the_demo_secret_key():
    result = run_manage("check", env={"DJANGO_SETTINGS_MODULE": "clmsite.settings_production", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_cli_failures_have_no_traceback(tmp_path):
    Tenant.objects.create(slug="cli-shop", name="CLI shop")
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,order_id,ordered_at,amount\nc1,o1,never,1\n")
    env = {"DATABASE_URL": shared_database_url()}

    unknown = run_manage("import_data", "--tenant", "no-such-shop", "--kind", "orders", str(bad), env=env)
    invalid = run_manage("import_data", "--tenant", "cli-shop", "--kind", "orders", str(bad), env=env)
    broken_db = run_manage("import_data", "--tenant", "cli-shop", "--kind", "orders", str(bad), env={"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/no_such_database_here"})

    for result in (unknown, invalid, broken_db):
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert "No tenant with slug" in unknown.stderr
    assert "row 2, column ordered_at: 'never' is not a date" in invalid.stderr
