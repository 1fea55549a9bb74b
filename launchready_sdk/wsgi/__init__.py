"""The SDK under WSGI: `LaunchReady.wrap_wsgi(app)`, for gunicorn's sync and gthread workers.

The SDK's layers are ASGI and stay the one implementation; under WSGI they run like this:

- **Every request** gets the request-context work directly in the WSGI thread: its
  `X-Request-ID`, the context every log line carries, the latency figure and the access line
  (written when the server closes the response, after the app's own close), and a
  problem+json 500 with the request id when the app raises.
- **A request for a path one of the path-specific layers acts on** (health, readiness,
  metrics, rate-limited, idempotent and cached routes; `PathDispatch` knows which) runs those
  layers as a task on the thread's private event loop, around the WSGI app adapted to ASGI.
  The app itself still runs in the request's thread; response chunks go out one at a time as
  the layers send them, so streamed bodies stay streamed.
- **Each worker thread** has its private loop, in a daemon thread of its own, and that loop is
  also the one asgiref's `async_to_sync` uses from the thread: Django's async views,
  `cached_sync` and `async_to_sync(lr.cache.invalidate)(...)` run there, and every call on it
  shares the thread's Redis connection (one per loop, see `store`).
- **Background work** that an ASGI server runs in the lifespan (the latency flush and fleet
  merge) runs on one background loop per process, in a daemon thread started at the first
  request (after the fork, so each worker has its own); at interpreter exit (a worker's
  graceful shutdown) it flushes the figures a last time and closes Redis.

Bad input: a chunked request body is read to its end and handed on with a `Content-Length`
(frameworks that read `CONTENT_LENGTH` otherwise see it empty); one over 64 MiB, malformed or
cut short gets 413/400 before the app runs. A client that leaves before its body arrives is
not answered by the app (logged as 499); one that leaves during the response makes the
chunk being written fail inside the layers, which unwind as under ASGI (an idempotency claim
is released, nothing partial is cached), and the task is cancelled if they do not finish
within 10 s. A worker killed mid-request leaves nothing but leases that run out (an
idempotency claim's 60 s).

Security stance: the same as under ASGI: the context, the proxy rules and the layers are the
same objects; nothing here reads a header the ASGI path does not.

Limits, candidly: OpenTelemetry server spans (`otel_exporter`) are ASGI-only for now; the
readiness drain at shutdown is the WSGI server's own (gunicorn stops accepting first); a
covered request costs a few thread hand-offs (about 0.1 ms), an uncovered one none;
`wsgi.file_wrapper` responses are iterated, not sent with sendfile.
"""

from __future__ import annotations

from launchready_sdk.wsgi._environ import MAX_CHUNKED_BODY_BYTES, scope_from_environ
from launchready_sdk.wsgi._exchange import ClientGone, WSGIAsASGI
from launchready_sdk.wsgi._loops import LoopThread, thread_loop
from launchready_sdk.wsgi._stack import WSGIStack

__all__ = [
    "MAX_CHUNKED_BODY_BYTES",
    "ClientGone",
    "LoopThread",
    "WSGIAsASGI",
    "WSGIStack",
    "scope_from_environ",
    "thread_loop",
]
