"""Benchmark: import a generated orders CSV into PostgreSQL, next to a plain COPY of the same file.

    python benchmarks/import_orders.py [--rows 1000000] [--also-rows 250000]
        [--database-url postgres://postgres@127.0.0.1:5432/clm_bench] [--keep]

For each size it generates one realistic orders CSV (fixed seed) and measures, each step in
its own subprocess so that peak memory is the step's own:

* ``copy``     a plain ``COPY … FROM STDIN (FORMAT csv)`` of the file into a bare table with
               typed columns and no indexes: the speed limit of getting these bytes into
               this server at all;
* ``import``   ``import_csv(tenant, "orders", path)`` into a fresh tenant (the first import);
* ``reimport`` the same file again into the same tenant (the idempotent path, "0 new");
* ``floor``    the rows the first import wrote, already final, COPYed into empty copies of
               the four tables with the same indexes: what writing them costs at all;
* ``floor-fk`` the same with the three foreign keys among them, checked at the commit as
               the import's are: the floor of a design that keeps referential integrity;
* ``floor-build`` the same rows COPYed into bare copies, then every index built and every
               foreign key checked in bulk: the floor of any design at all, one that gives
               each shop tables of its own included.

The goal is that the first import runs at no less than a third of COPY's rows per second,
and that its peak memory does not grow with the file (compare the sizes).

The database is created if missing and migrated. Tenants this benchmark creates (slug
``bench-orders-…``) and their rows are deleted before and after the run (``--keep`` keeps
them after), so runs do not slow each other down.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/clm_bench"
SLUG_PREFIX = "bench-orders-"
GOAL_RATIO = 1 / 3
HEADER = ["customer_id", "order_id", "ordered_at", "amount", "currency", "quantity", "sku", "product_name", "category", "status"]
CATEGORIES = ["Apparel", "Footwear", "Home", "Kitchen", "Garden", "Toys", "Books", "Beauty", "Sports", "Electronics", "Grocery", "Pets"]
WORDS = ["Classic", "Organic", "Deluxe", "Compact", "Everyday", "Premium", "Travel", "Vintage", "Smart", "Eco", "Bold", "Soft"]
NOUNS = ["Tee", "Sneaker", "Mug", "Lamp", "Backpack", "Blanket", "Candle", "Bottle", "Jacket", "Planter", "Puzzle", "Headphones"]


# --- The file ----------------------------------------------------------------------------


def generate_orders_csv(path: Path, rows: int, seed: int = 20240331) -> None:
    """A file shaped like a real export: orders in time order over two years, ~rows/5
    customers buying at random, 1-4 lines per order (2.5 on average), up to 50k skus with
    a long tail, every optional column filled, a few refunds and a few non-default
    currencies. The same seed gives the same bytes."""
    rng = random.Random(seed)
    customers = max(1, rows // 5)
    skus = max(1, min(50_000, rows // 20))
    products = [
        (f"SKU-{n:06d}", f"{rng.choice(WORDS)} {rng.choice(NOUNS)} {n}", rng.choice(CATEGORIES), rng.randint(199, 19_999))
        for n in range(skus)
    ]
    start = 1_640_995_200  # 2022-01-01T00:00:00Z
    span = 2 * 365 * 86_400
    written = 0
    order_no = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        while written < rows:
            order_no += 1
            customer = f"C{rng.randrange(customers):07d}"
            moment = time.gmtime(start + span * written // rows + rng.randrange(3600))
            ordered_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)
            currency = "USD" if rng.random() < 0.9 else rng.choice(("EUR", "GBP", "CAD"))
            status = "completed" if rng.random() < 0.95 else "refunded"
            for _ in range(min(rng.choice((1, 2, 2, 3, 3, 4)), rows - written)):
                sku, name, category, cents = products[min(int(rng.paretovariate(1.2)) - 1, skus - 1) if rng.random() < 0.5 else rng.randrange(skus)]
                quantity = rng.choice((1, 1, 1, 1, 2, 2, 3, 5))
                amount = cents * quantity
                writer.writerow([customer, f"O{order_no:09d}", ordered_at, f"{amount // 100}.{amount % 100:02d}", currency, quantity, sku, name, category, status])
                written += 1


# --- Steps (each runs in its own subprocess) ------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _CpuClock:
    """CPU seconds spent by this process and by its PostgreSQL backend over a step.

    On a shared machine wall-clock time swings with other load; CPU time says where the
    work is. The backend's comes from /proc, so only for a server on this machine that we
    may read (else None)."""

    def __init__(self, backend_pid: int) -> None:
        self.stat = Path(f"/proc/{backend_pid}/stat")
        self.python = time.process_time()
        self.server = self._server()

    def _server(self) -> float | None:
        try:
            fields = self.stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def read(self) -> dict[str, float | None]:
        server = self._server()
        return {
            "python_cpu": time.process_time() - self.python,
            "server_cpu": server - self.server if server is not None and self.server is not None else None,
        }


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clmsite.settings")
    import django

    django.setup()


def step_copy(path: Path, rows: int) -> dict[str, Any]:
    """COPY the file as-is into a bare typed table: parse and store, nothing else."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_orders_copy")
        conn.execute(
            "CREATE TABLE bench_orders_copy (customer_id text, order_id text, ordered_at timestamptz, amount numeric(14,2), "
            "currency text, quantity integer, sku text, product_name text, category text, status text)"
        )
        conn.commit()
        clock = _CpuClock(conn.info.backend_pid)
        started = time.perf_counter()
        with conn.cursor() as cursor, path.open("rb") as source:
            with cursor.copy("COPY bench_orders_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
            loaded = cursor.rowcount
        conn.commit()
        seconds = time.perf_counter() - started
        cpu = clock.read()
        conn.execute("DROP TABLE bench_orders_copy")
        conn.commit()
    assert loaded == rows, f"COPY loaded {loaded} rows, expected {rows}"
    return {"seconds": seconds, "message": f"{loaded:,} rows copied", **cpu}


def step_import(path: Path, rows: int, slug: str, *, again: bool) -> dict[str, Any]:
    _setup_django()
    from django.db import connection

    from clmsite.models import Tenant
    from customers.services.imports import import_csv

    tenant = Tenant.objects.get(slug=slug) if again else Tenant.objects.create(slug=slug, name=f"Benchmark {slug}")
    clock = _CpuClock(connection.connection.info.backend_pid)
    started = time.perf_counter()
    result = import_csv(tenant, "orders", str(path))
    seconds = time.perf_counter() - started
    cpu = clock.read()
    if not result.ok:
        raise SystemExit(f"import failed: {result.message} {result.errors[:5]}")
    if again and (result.created or result.updated or result.unchanged != result.rows):
        raise SystemExit(f"re-import was not idempotent: {result.message}")
    return {"seconds": seconds, "message": result.message, **cpu}


FLOOR_TABLES = ("customers_customer", "customers_product", "customers_order", "customers_orderitem")


FLOOR_FOREIGN_KEYS = (  # (table, column, referenced table): the import's deferred checks
    ("customers_order", "customer_id", "customers_customer"),
    ("customers_orderitem", "order_id", "customers_order"),
    ("customers_orderitem", "product_id", "customers_product"),
)


FLOOR_MODES = ("floor", "floor-fk", "floor-build")


def step_floor(rows: int, slug: str, mode: str = "floor") -> dict[str, Any]:
    """A floor of import designs: COPY the rows the first import wrote, already in their final
    form (ids resolved, nothing to check), into empty copies of the four tables. The rows are
    read out before the clock starts.

    * ``floor``: the copies have the same indexes and check constraints but no foreign keys.
      No import that writes into the shared tables (each row into indexes that already hold
      every shop's rows) writes faster than this.
    * ``floor-fk``: the same with the three foreign keys among them, deferred to the commit
      as Django creates them: the floor of such a design that keeps referential integrity.
    * ``floor-build``: bare copies (no index, no key); then every index of the real tables
      is built in bulk (sorted once, as CREATE INDEX does, where an insert walks the tree
      per row) and the three foreign keys are added, each checked by one join instead of a
      query per row. Only a design that writes a shop's rows into tables of their own (a
      partition or schema per shop) could write this way: this is the floor of every design.
    """
    import io

    import psycopg

    build_after = mode == "floor-build"
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        tenant_id = conn.execute("SELECT id FROM clmsite_tenant WHERE slug = %s", [slug]).fetchone()[0]
        dumps, indexes = {}, {}
        for table in FLOOR_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS bench_floor_{table} CASCADE")
            like = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS" + ("" if build_after else " INCLUDING INDEXES")
            conn.execute(f"CREATE TABLE bench_floor_{table} (LIKE {table} {like})")
            buffer = io.BytesIO()
            with conn.cursor().copy(f"COPY (SELECT * FROM {table} WHERE tenant_id = %s) TO STDOUT", [tenant_id]) as copy:
                for chunk in copy:
                    buffer.write(chunk)
            dumps[table] = buffer.getvalue()
            definitions = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s", [table]).fetchall()
            indexes[table] = [
                definition.replace(f" {name} ON public.{table} ", f" bench_floor_{name} ON public.bench_floor_{table} ") for name, definition in definitions
            ]
        if mode == "floor-fk":
            for table, column, target in FLOOR_FOREIGN_KEYS:
                conn.execute(
                    f"ALTER TABLE bench_floor_{table} ADD FOREIGN KEY ({column}) REFERENCES bench_floor_{target} (id) DEFERRABLE INITIALLY DEFERRED"
                )
        if build_after:
            # The most the builds can be given: sorts in memory, and parallel workers where the
            # server allows them (max_parallel_maintenance_workers).
            conn.execute("SET maintenance_work_mem = '1GB'")
        conn.commit()
        clock = _CpuClock(conn.info.backend_pid)
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for table in FLOOR_TABLES:
                with cursor.copy(f"COPY bench_floor_{table} FROM STDIN") as copy:
                    copy.write(dumps[table])
            if build_after:
                for table in FLOOR_TABLES:
                    for definition in indexes[table]:
                        cursor.execute(definition)
                for table, column, target in FLOOR_FOREIGN_KEYS:
                    cursor.execute(f"ALTER TABLE bench_floor_{table} ADD FOREIGN KEY ({column}) REFERENCES bench_floor_{target} (id)")
        conn.commit()
        seconds = time.perf_counter() - started
        cpu = clock.read()
        counts = {table: len(dumps[table].splitlines()) for table in FLOOR_TABLES}
        for table in reversed(FLOOR_TABLES):
            conn.execute(f"DROP TABLE bench_floor_{table} CASCADE")
        conn.commit()
    assert counts["customers_orderitem"] == rows, counts
    message = ", ".join(f"{counts[t]:,} {t.split('_', 1)[1]}" for t in FLOOR_TABLES) + " copied"
    if build_after:
        message += f"; then {sum(map(len, indexes.values()))} indexes built and {len(FLOOR_FOREIGN_KEYS)} foreign keys checked"
    return {"seconds": seconds, "message": message, **cpu}


def step_cleanup() -> dict[str, Any]:
    """Delete the benchmark's tenants and their rows, in SQL: the ORM's cascade would load
    every order into Python first. Benchmark tenants own rows in the customers tables only."""
    import psycopg

    tables = ["customers_orderitem", "customers_review", "customers_order", "customers_product", "customers_customer"]
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        with conn.transaction():
            ids = [row[0] for row in conn.execute("SELECT id FROM clmsite_tenant WHERE slug LIKE %s", [SLUG_PREFIX + "%"])]
            for table in tables:
                conn.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", [ids])
            conn.execute("DELETE FROM clmsite_tenant WHERE id = ANY(%s)", [ids])
        if ids:
            for table in tables:
                conn.execute(f"VACUUM ANALYZE {table}")
    return {"seconds": 0.0, "message": f"deleted {len(ids)} benchmark tenant(s)"}


def run_step(name: str, url: str, *args: str) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its last stdout line is the JSON result."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "clmsite.settings"}
    completed = subprocess.run(
        [sys.executable, __file__, "--step", name, "--database-url", url, *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout + completed.stderr)
        raise SystemExit(f"step {name} failed (exit {completed.returncode})")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _child_main(args: argparse.Namespace) -> None:
    path = Path(args.csv) if args.csv else Path()
    if args.step == "copy":
        result = step_copy(path, args.rows)
    elif args.step == "import":
        result = step_import(path, args.rows, args.slug, again=False)
    elif args.step == "reimport":
        result = step_import(path, args.rows, args.slug, again=True)
    elif args.step in FLOOR_MODES:
        result = step_floor(args.rows, args.slug, args.step)
    else:
        result = step_cleanup()
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


# --- The run ----------------------------------------------------------------------------------


def _ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info.get("dbname")
    try:
        psycopg.connect(url).close()
    except psycopg.OperationalError:
        with psycopg.connect(psycopg.conninfo.make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"created database {name}")


def _measure_size(rows: int, url: str, workdir: Path, run_id: str) -> list[dict[str, Any]]:
    path = workdir / f"orders_{rows}.csv"
    started = time.perf_counter()
    generate_orders_csv(path, rows)
    print(f"generated {path.name}: {rows:,} rows, {path.stat().st_size / 1e6:,.1f} MB in {time.perf_counter() - started:.1f} s", flush=True)
    slug = f"{SLUG_PREFIX}{run_id}-{rows}"
    common = ["--csv", str(path), "--rows", str(rows)]
    results = []
    for step, label, extra in (
        ("copy", "COPY into bare table", []),
        ("import", "import_csv (first import)", ["--slug", slug]),
        ("reimport", "import_csv (re-import, 0 new)", ["--slug", slug]),
        ("floor", "floor: final rows COPYed", ["--slug", slug]),
        ("floor-fk", "floor + deferred foreign keys", ["--slug", slug]),
        ("floor-build", "floor, indexes and keys built after", ["--slug", slug]),
    ):
        result = run_step(step, url, *common, *extra)
        result.update(step=label, rows=rows)
        print(f"  {label}: {result['seconds']:.1f} s, {result['message']}", flush=True)
        results.append(result)
    path.unlink()
    return results


def _print_table(results: list[dict[str, Any]]) -> None:
    copy_speed = results[0]["rows"] / results[0]["seconds"]
    print(f"{'step':<36} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'vs COPY':>8} {'peak RSS MB':>12} {'Python CPU s':>13} {'server CPU s':>13}")
    for r in results:
        speed = r["rows"] / r["seconds"]
        server = "n/a" if r["server_cpu"] is None else f"{r['server_cpu']:.1f}"
        print(
            f"{r['step']:<36} {r['rows']:>10,} {r['seconds']:>8.1f} {speed:>10,.0f} {speed / copy_speed:>8.2f} "
            f"{r['peak_rss_mb']:>12.0f} {r['python_cpu']:>13.1f} {server:>13}"
        )


def _server_settings(url: str) -> str:
    import psycopg

    names = ("server_version", "shared_buffers", "work_mem", "max_wal_size", "synchronous_commit")
    with psycopg.connect(url) as conn:
        values = [conn.execute(f"SHOW {name}").fetchone()[0] for name in names]
    return ", ".join(f"{name}={value}" for name, value in zip(names, values, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the generated file (default 1,000,000)")
    parser.add_argument("--also-rows", type=int, action="append", default=[], help="also measure this size, to show memory is flat")
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"PostgreSQL database to use (default {DEFAULT_URL})")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark tenants and their rows afterwards")
    parser.add_argument("--step", choices=["copy", "import", "reimport", *FLOOR_MODES, "cleanup"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--slug", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a PostgreSQL URL")
    os.environ["DATABASE_URL"] = args.database_url
    if args.step:
        _child_main(args)
        return

    _ensure_database(args.database_url)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clmsite.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    print(run_step("cleanup", args.database_url)["message"])
    print(f"server: {_server_settings(args.database_url)}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    run_id = time.strftime("%Y%m%d%H%M%S")
    sizes = sorted({args.rows, *args.also_rows})
    tables: dict[int, list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-orders-") as workdir:
            for rows in sizes:
                tables[rows] = _measure_size(rows, args.database_url, Path(workdir), run_id)
    finally:
        if not args.keep:
            print(run_step("cleanup", args.database_url)["message"])

    for rows in sizes:
        print(f"\nOrders import, {rows:,} rows ({args.database_url.rsplit('/', 1)[-1]}):")
        _print_table(tables[rows])
    if len(sizes) > 1:
        peaks = ", ".join(f"{rows:,} rows: {tables[rows][1]['peak_rss_mb']:.0f} MB" for rows in sizes)
        growth = tables[sizes[-1]][1]["peak_rss_mb"] / tables[sizes[0]][1]["peak_rss_mb"]
        print(f"\nPeak RSS of the first import by size: {peaks} (x{growth:.2f} for x{sizes[-1] / sizes[0]:.0f} rows)")
    print(f"Load average at the end: {os.getloadavg()[0]:.1f} (other processes share these CPUs; wall-clock times move with them)")
    main_rows = tables[args.rows]
    ratio = (main_rows[1]["rows"] / main_rows[1]["seconds"]) / (main_rows[0]["rows"] / main_rows[0]["seconds"])
    verdict = "MET" if ratio >= GOAL_RATIO else "NOT MET"
    print(f"Goal (first import >= 1/3 of COPY rows/s at {args.rows:,} rows): {verdict}, ratio {ratio:.2f}")
    floor = min(main_rows[3:], key=lambda r: r["seconds"])
    budget = main_rows[0]["seconds"] / GOAL_RATIO
    verdict = "the goal is beyond reach of any import design on this schema and server" if floor["seconds"] > budget else "the floors do not rule the goal out"
    print(f"A third of COPY's speed is {budget:.1f} s for this file; the lowest floor ({floor['step']}) is {floor['seconds']:.1f} s, "
          f"ratio {main_rows[0]['seconds'] / floor['seconds']:.2f}: {verdict}.")


if __name__ == "__main__":
    main()
