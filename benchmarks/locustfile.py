"""Locust users for benchmarks/load.py (run it, not this file, to get the setup).

The users are FastHttpUsers (geventhttpclient) rather than HttpUsers (requests): Locust runs
on the same 2 cores as the server, and requests' per-call overhead was CPU taken from
gunicorn and PostgreSQL. The server sees the same requests either way."""

from __future__ import annotations

import itertools
import os
import random
from http.cookiejar import Cookie
from pathlib import Path

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

IDS = [int(line) for line in Path(os.environ.get("LOAD_IDS_FILE", "/dev/null")).read_text().split()] or [1]
SESSIONS = itertools.cycle(os.environ.get("LOAD_SESSIONS", "").split(","))


class Merchant(FastHttpUser):
    """Browses like a person: a page every 0.5-1.5 s, already signed in."""

    weight = 4
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.client.cookiejar.set_cookie(Cookie(
            0, "sessionid", next(SESSIONS), None, False, "127.0.0.1", False, False, "/", True, False, None, True, None, None, {},
        ))

    def page(self, path: str, name: str) -> None:
        # Not following redirects: a lost session (a redirect to the login page) is an error.
        with self.client.get(path, name=name, allow_redirects=False, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")

    @task(4)
    def customer_list(self) -> None:
        self.page(f"/customers/?page={random.randint(1, 200)}", "customer list")

    @task(4)
    def customer_detail(self) -> None:
        self.page(f"/customers/{random.choice(IDS)}/", "customer detail")

    @task(2)
    def dashboard(self) -> None:
        self.page("/", "dashboard")


class Integrator(FastHttpUser):
    """Syncs customer changes to the API in batches of 100 every 2-4 s."""

    weight = 1
    wait_time = between(2, 4)

    @task
    def bulk_upsert(self) -> None:
        rows = [{"customer_id": f"C{n:07d}", "country": random.choice(["US", "DE", "FR", "GB"])} for n in random.sample(range(100_000), 100)]
        self.client.post("/api/v1/customers/bulk/", json=rows, headers={"Authorization": f"Bearer {os.environ['LOAD_API_KEY']}"}, name="bulk upsert API")
