"""Locust users for benchmarks/load.py (run it, not this file, to get the setup)."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

from locust import HttpUser, between, task

IDS = [int(line) for line in Path(os.environ.get("LOAD_IDS_FILE", "/dev/null")).read_text().split()] or [1]
SESSIONS = itertools.cycle(os.environ.get("LOAD_SESSIONS", "").split(","))


class Merchant(HttpUser):
    """Browses like a person: a page every 0.5-1.5 s, already signed in."""

    weight = 4
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.client.cookies.set("sessionid", next(SESSIONS))

    @task(4)
    def customer_list(self) -> None:
        self.client.get(f"/customers/?page={random.randint(1, 200)}", name="customer list")

    @task(4)
    def customer_detail(self) -> None:
        self.client.get(f"/customers/{random.choice(IDS)}/", name="customer detail")

    @task(2)
    def dashboard(self) -> None:
        self.client.get("/", name="dashboard")


class Integrator(HttpUser):
    """Syncs customer changes to the API in batches of 100 every 2-4 s."""

    weight = 1
    wait_time = between(2, 4)

    @task
    def bulk_upsert(self) -> None:
        rows = [{"customer_id": f"C{n:07d}", "country": random.choice(["US", "DE", "FR", "GB"])} for n in random.sample(range(100_000), 100)]
        self.client.post("/api/v1/customers/bulk/", json=rows, headers={"Authorization": f"Bearer {os.environ['LOAD_API_KEY']}"}, name="bulk upsert API")
