"""The request id carried into Celery tasks: in the message on the way out, in the worker's
log context on the way in.

`propagate_request_ids()` connects three of Celery's signals (Celery is imported then, not
before). On the producer, `before_task_publish` puts the id of the request being served into
the message headers (`launchready_request_id`). In the worker, `task_prerun` makes it the
current request id while the task runs, so every log line the task writes (structlog or
stdlib, through the SDK's pipeline) carries it, and `task_postrun` restores the context. A
task sent outside a request (a beat schedule, a shell) gets a fresh id of its own, so its
lines still group together. `LaunchReady()` calls it on its own when Celery is already
imported in the process; a worker that builds no `LaunchReady` calls it in its Celery module:

    from launchready_sdk.celery import propagate_request_ids
    app = Celery("shop")
    propagate_request_ids()

With `keep_logging=True` (the default) Celery also leaves the process's logging as it is
(the SDK's JSON lines, when a `LaunchReady` configured them) instead of installing its own
handlers.

Security stance: an id read from a message is used only when it has the shape of a request
id (`[A-Za-z0-9._:-]{1,128}`); anything else is replaced by a fresh one.

Limits, candidly: the id travels in the message headers, so it reaches tasks sent with
Celery's message protocol 2 (the default since Celery 4); one task chained from another
inherits it only when the chain is sent while the first task runs.
"""

from __future__ import annotations

from typing import Any

from launchready_sdk.context import (
    RequestContext,
    activate,
    deactivate,
    get_request_id,
    new_request_id,
    valid_request_id,
)

HEADER = "launchready_request_id"
_TOKEN = "_launchready_token"


def propagate_request_ids(*, keep_logging: bool = True) -> None:
    """Connect Celery's signals (idempotent): the request id into messages and into tasks."""
    from celery import signals

    signals.before_task_publish.connect(_publish, weak=False, dispatch_uid="launchready.publish")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="launchready.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="launchready.postrun")
    if keep_logging:
        signals.setup_logging.connect(_keep_logging, weak=False, dispatch_uid="launchready.log")


def _publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    request_id = get_request_id()
    if request_id is not None and isinstance(headers, dict):
        headers.setdefault(HEADER, request_id)


def _prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    if request is None:
        return
    found = getattr(request, HEADER, None)
    if found is None:
        headers = getattr(request, "headers", None)
        found = headers.get(HEADER) if isinstance(headers, dict) else None
    valid = isinstance(found, str) and valid_request_id(found.encode("latin-1", "replace"))
    request_id = found if valid and isinstance(found, str) else new_request_id()
    name = str(getattr(task, "name", None) or "task")
    ctx = RequestContext(request_id, "TASK", name, None)
    ctx.route = name
    setattr(request, _TOKEN, activate(ctx))


def _postrun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    token = getattr(request, _TOKEN, None)
    if token is None:
        return
    setattr(request, _TOKEN, None)
    try:
        deactivate(token)
    except ValueError:  # postrun ran in another context than prerun
        activate(None)


def _keep_logging(**_: Any) -> None:
    """Connected to `setup_logging`: its mere presence keeps Celery off the root logger."""
