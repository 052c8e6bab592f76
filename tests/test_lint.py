"""Static checks that keep tenant scoping in one place (a small AST lint, run by CI).

* Tenant-owned models use the scoped manager by default.
* ``Model.unscoped`` appears only in the functions listed here, each a reviewed exception.
* Raw SQL appears only in the listed modules (the import service binds the tenant as a
  parameter in every statement).
* Every Celery task that receives a ``tenant_id`` loads the tenant itself and runs its
  queries inside ``tenant_context`` (or ``claim_job``, which does), so an id passed to a
  task is re-checked against the tenant that owns it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps

from clmsite.tenancy import TenantManager, TenantOwnedModel

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["clmsite", "customers", "modeling", "campaigns"]
UNSCOPED_ALLOWED = {
    ("modeling/jobs.py", "reap_stale_jobs"),  # the reaper scans every tenant's running jobs, by design
}
# imports: tenant bound in every statement; views: SELECT 1 health check; lookups: asks the
# catalogue whether unaccent exists (no table of anyone's); statistics: ANALYZE of a table
# by its model's name (reads no row out).
RAW_SQL_ALLOWED = {"customers/services/imports.py", "clmsite/views.py", "clmsite/lookups.py", "clmsite/statistics.py"}


def sources() -> list[tuple[str, ast.Module]]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            files.append((str(path.relative_to(ROOT)), ast.parse(path.read_text(), filename=str(path))))
    return files


def functions(tree: ast.Module) -> list[ast.FunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def enclosing(tree: ast.Module, target: ast.AST) -> str:
    for function in functions(tree):
        if any(node is target for node in ast.walk(function)):
            return function.name
    return "<module>"


def called_names(node: ast.AST) -> set[str]:
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            names.add(func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "")
    return names


def test_tenant_owned_models_are_scoped_by_default() -> None:
    owned = [model for model in apps.get_models() if issubclass(model, TenantOwnedModel)]
    assert len(owned) >= 15
    unscoped = [model.__name__ for model in owned if not isinstance(model._default_manager, TenantManager)]
    assert unscoped == []


def test_unscoped_access_only_where_reviewed() -> None:
    found = set()
    for name, tree in sources():
        if name == "clmsite/tenancy.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "unscoped":
                found.add((name, enclosing(tree, node)))
    assert found - UNSCOPED_ALLOWED == set(), f"unscoped queries outside the reviewed list: {sorted(found - UNSCOPED_ALLOWED)}"


def test_raw_sql_only_in_reviewed_modules() -> None:
    offenders = []
    for name, tree in sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)) or name in RAW_SQL_ALLOWED:
                continue
            target = ast.unparse(node.func.value)
            if node.func.attr in {"raw", "extra"} or (node.func.attr in {"execute", "executemany"} and "cursor" in target):
                offenders.append(f"{name}:{node.lineno} {target}.{node.func.attr}()")
    assert offenders == []


def rechecks_tenant(function: ast.FunctionDef, by_name: dict[str, ast.FunctionDef], depth: int = 0) -> bool:
    """Loads the tenant from ``tenant_id`` and queries inside tenant_context/claim_job, itself
    or in the project function it hands ``tenant_id`` to."""
    calls = called_names(function)
    looks_up = "_tenant" in calls or any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "filter"
        and any(k.arg == "pk" and isinstance(k.value, ast.Name) and k.value.id == "tenant_id" for k in n.keywords)
        for n in ast.walk(function)
    )
    if looks_up and calls & {"tenant_context", "claim_job"}:
        return True
    if depth < 2:
        for call in ast.walk(function):
            hands_over = isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in by_name
            if hands_over and any(isinstance(a, ast.Name) and a.id == "tenant_id" for a in call.args) and rechecks_tenant(by_name[call.func.id], by_name, depth + 1):
                return True
    return False


def test_tasks_recheck_the_tenant_of_every_id() -> None:
    tasks = []
    by_name = {f.name: f for _, tree in sources() for f in functions(tree)}
    for name, tree in sources():
        for function in functions(tree):
            decorators = {d.func.id if isinstance(d, ast.Call) and isinstance(d.func, ast.Name) else getattr(d, "id", "") for d in function.decorator_list}
            if "shared_task" not in decorators:
                continue
            parameters = [a.arg for a in function.args.args]
            tasks.append(f"{name}:{function.name}")
            if "tenant_id" not in parameters:
                assert not [p for p in parameters if p.endswith("_id")], f"{name}:{function.name} takes ids but no tenant_id"
                continue
            assert rechecks_tenant(function, by_name), f"{name}:{function.name} must load the tenant from tenant_id and query inside tenant_context"
    assert len(tasks) >= 6, tasks
