"""Celery entry points for customer data. Thin: they re-check the tenant and call a service."""

from celery import shared_task

from customers.services.import_jobs import run_import_job


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def run_import(self, tenant_id: int, job_id: int) -> None:
    run_import_job(tenant_id, job_id, task=self)
