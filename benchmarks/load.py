"""Benchmark: the web app under load — gunicorn + PostgreSQL, 100k customers, 50 clients.

    .venv/bin/python benchmarks/load.py [--customers 100000] [--users 50] [--seconds 60] \
        [--spawn-rate 10] [--workers 4] [--database-url postgres://postgres@127.0.0.1:5432/clm_load]

It creates (once) a tenant with ~100k customers and their orders through the import
service, starts gunicorn on loopback, and runs Locust headless for a bounded time: 50
concurrent clients: 40 merchants browsing (customer list, customer detail, dashboard; a page
every 0.5-1.5 s, signed in beforehand) and 10 integrators pushing bulk upserts of 100
customers to the API every 2-4 s. Clients start 10 a second; the statistics restart once
all 50 run, so the figures are for 60 s at 50 concurrent clients. It prints requests/s, p50
and p99 latency and errors per endpoint.

Goals: zero errors; p99 under 300 ms for the reads on this 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/clm_load"
SLUG, USER, PASSWORD = "load", "load-merchant", "load-pass-123456"
SECRET_KEY = "load-benchmark-only-" + "k" * 40  # the sessions made here must verify in gunicorn
READS = ("customer list", "customer detail", "dashboard")
P99_GOAL_MS = 300


def prepare(url: str, customers: int) -> dict[str, str]:
    """Database, tenant, user, API key and data (kept between runs)."""
    from benchmarks.import_orders import _ensure_database, generate_orders_csv

    _ensure_database(url)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    os.environ["DATABASE_URL"] = url
    os.environ["SECRET_KEY"] = SECRET_KEY
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clmsite.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from clmsite.models import Role, Tenant
    from clmsite.services import do_add_member, do_create_api_key
    from clmsite.tenancy import tenant_context
    from customers.models import Customer
    from customers.services.imports import import_csv

    tenant, _ = Tenant.objects.get_or_create(slug=SLUG, defaults={"name": "Load Test Shop"})
    user = get_user_model().objects.filter(username=USER).first() or get_user_model().objects.create_user(USER, password=PASSWORD)
    if not user.memberships.filter(tenant=tenant).exists():
        do_add_member(tenant, user, Role.OWNER)
    with tenant_context(tenant):
        have = Customer.objects.count()
    if have < customers:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "orders.csv"
            print(f"generating and importing orders for {customers:,} customers (once) ...", flush=True)
            generate_orders_csv(path, int(customers * 5.8))  # ~86% of the id pool buys: about `customers` distinct buyers
            started = time.perf_counter()
            result = import_csv(tenant, "orders", str(path))
            assert result.ok, result.message
            print(f"imported {result.rows:,} rows in {time.perf_counter() - started:.0f}s", flush=True)
    with tenant_context(tenant):
        count = Customer.objects.count()
        ids = list(Customer.objects.order_by("?").values_list("pk", flat=True)[:5000])
    _, key = do_create_api_key(tenant, role=Role.ANALYST, name="load benchmark")
    ids_file = Path(tempfile.gettempdir()) / "clm-load-ids.txt"
    ids_file.write_text("\n".join(map(str, ids)))
    return {"LOAD_IDS_FILE": str(ids_file), "LOAD_API_KEY": key, "LOAD_SESSIONS": ",".join(sessions(user, 100)), "LOAD_CUSTOMERS": str(count)}


def sessions(user: object, n: int) -> list[str]:
    """Signed-in sessions for the merchants: the benchmark measures browsing, not the
    deliberately slow password hashing of 50 simultaneous logins."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    keys = []
    for _ in range(n):
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)  # type: ignore[attr-defined]
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()  # type: ignore[attr-defined]
        store.create()
        keys.append(store.session_key)
    return keys


def serve(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {
        **os.environ, "DATABASE_URL": url, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1", "SECRET_KEY": SECRET_KEY,
        "DB_CONN_MAX_AGE": "60", "CACHE_URL": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/12"), "API_THROTTLE_RATE": "100000/min",
    }
    env.pop("CELERY_BROKER_URL", None)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "clmsite.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)  # noqa: S310 - loopback
            return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("gunicorn did not start")


def warm_up(port: int, env: dict[str, str], per_endpoint: int = 100) -> None:
    """First requests in each gunicorn worker load the URLconf, pandas and the templates;
    send a few of each kind so the measurement is of the steady state."""
    import json

    session = env["LOAD_SESSIONS"].split(",")[0]
    ids = Path(env["LOAD_IDS_FILE"]).read_text().split()
    base = f"http://127.0.0.1:{port}"
    for i in range(per_endpoint):
        for path in ("/", f"/customers/?page={i + 1}", f"/customers/{ids[i % len(ids)]}/"):
            request = urllib.request.Request(base + path, headers={"Cookie": f"sessionid={session}"})
            urllib.request.urlopen(request, timeout=30).read()  # noqa: S310 - loopback
        body = json.dumps([{"customer_id": f"C{i:07d}"}]).encode()
        request = urllib.request.Request(base + "/api/v1/customers/bulk/", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {env['LOAD_API_KEY']}", "Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()  # noqa: S310 - loopback


def run_locust(port: int, users: int, seconds: int, spawn_rate: int, env: dict[str, str], prefix: Path) -> None:
    """Clients start ``spawn_rate`` a second; the statistics restart once all of them run
    (``--reset-stats``), so the figures are for ``seconds`` at the full ``users`` clients, not
    for the ramp, when 50 first requests arriving in the same second measure a queue."""
    ramp = -(-users // spawn_rate)
    subprocess.run(
        [str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "benchmarks" / "locustfile.py"), "--headless", "-u", str(users), "-r", str(spawn_rate),
         "--reset-stats", "-t", f"{seconds + ramp}s", "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ, **env}, check=False,
    )


def report(prefix: Path, seconds: int) -> bool:
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv", newline="")))  # noqa: SIM115
    print()
    print("| endpoint | requests | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    ok = True
    for row in rows:
        name = row["Name"]
        if name == "Aggregated":
            name = "**all**"
        print(f"| {name} | {int(row['Request Count']):,} | {float(row['Requests/s']):.1f} | {row['50%']} | {row['99%']} | {row['Failure Count']} |")
        if int(row["Failure Count"]):
            ok = False
        if row["Name"] in READS and float(row["99%"]) >= P99_GOAL_MS:
            ok = False
    print()
    print(f"goal: zero errors and p99 < {P99_GOAL_MS} ms for reads ({', '.join(READS)}) -> {'MET' if ok else 'NOT MET'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60, help="measured seconds at the full number of clients")
    parser.add_argument("--spawn-rate", type=int, default=10, help="clients started per second before the measured run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    env = prepare(args.database_url, args.customers)
    print(f"{env['LOAD_CUSTOMERS']} customers; gunicorn with {args.workers} workers; {args.users} clients for {args.seconds}s", flush=True)
    server = serve(args.database_url, args.port, args.workers)
    try:
        warm_up(args.port, env)
        with tempfile.TemporaryDirectory() as directory:
            prefix = Path(directory) / "load"
            run_locust(args.port, args.users, args.seconds, args.spawn_rate, env, prefix)
            ok = report(prefix, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
