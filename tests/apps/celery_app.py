"""A Celery worker app for the tests: its broker is `CELERY_BROKER_URL`; its task logs a line
through the SDK's logging."""

from __future__ import annotations

import logging
import os

from celery import Celery

from launchready_sdk import LaunchReady, Settings, get_logger
from launchready_sdk.celery import propagate_request_ids

app = Celery("lrtest", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    task_default_queue="lrtest",
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
LaunchReady(Settings(service_name="worker", access_log=False))  # the SDK's JSON lines
propagate_request_ids()
log = get_logger("tasks")


@app.task(name="lrtest.charge")
def charge(order_id: str) -> None:
    log.info("task.charged", order_id=order_id)
    logging.getLogger("tasks.stdlib").warning("task.stdlib_too")
