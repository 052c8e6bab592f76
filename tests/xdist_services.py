"""Give each pytest-xdist worker its own Redis databases and its own ``var/`` directory.

``make test`` runs the suite in two worker processes (``-n 2``), each against its own
PostgreSQL test database (pytest-django names them ``…_gw0``, ``…_gw1``). The services that
are not per database must be split too, or the workers would meet in them:

* the cache: every test starts with ``cache.clear()`` (FLUSHDB), and cached aggregates are
  keyed by tenant id, which both test databases hand out;
* the broker: a real worker started by one test must not take another test's tasks;
* ``var/``: model artifacts are written under ``MODEL_DIR/<tenant id>/job-<id>/``;
* the cores: two processes each running two OpenMP threads (LightGBM, torch, BLAS) on two
  cores stall at every barrier whenever the other is busy (see ``modeling.encoder.
  configure_threads``), so each worker runs one thread of each unless told otherwise.

Worker *n* moves each Redis URL's database number down by 2n (14 and 13 stay with ``gw0``;
``gw1`` gets 12 and 11) and sets ``CLM_VAR_DIR`` to ``var/xdist/gw<n>``. It must run before
Django reads its settings, so it is loaded as a plugin (``-p tests.xdist_services``), which
pytest imports while it parses the command line; xdist sets ``PYTEST_XDIST_WORKER`` before
that. Without xdist it changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16  # Redis's default number of databases


def worker_redis_url(url: str, worker: int) -> str:
    parts = urlsplit(url)
    if not parts.scheme.startswith("redis"):
        return url
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(database - 2 * worker) % REDIS_DATABASES}"))


def _split_services() -> None:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not name.startswith("gw"):
        return
    worker = int(name.removeprefix("gw"))
    for variable in ("CELERY_BROKER_URL", "CACHE_URL"):
        if os.environ.get(variable):
            os.environ[variable] = worker_redis_url(os.environ[variable], worker)
    var_dir = Path(__file__).resolve().parent.parent / "var" / "xdist" / name
    var_dir.mkdir(parents=True, exist_ok=True)
    os.environ["CLM_VAR_DIR"] = str(var_dir)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CLM_TORCH_THREADS", "CLM_TABULAR_THREADS"):
        os.environ.setdefault(variable, "1")


_split_services()
