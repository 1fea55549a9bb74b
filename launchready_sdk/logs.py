"""Structured logs: structlog and the stdlib root logger through one redacting pipeline.

`configure_logging(settings)` (called by `LaunchReady()` unless `configure_logging=False`)
makes every log line one JSON object on stdout (or a readable console line), whether it came
from `get_logger()`, from `logging.getLogger(...)`, or from uvicorn, Django and other libraries:
they share the processors, so each line carries `timestamp` (UTC ISO 8601), `level`, `logger`,
`event` and `request_id`, exceptions become structured tracebacks without local variables, and
`redact` runs last before rendering so no secret reaches the output.

Nothing is configured on import. The access log (`AccessLogger`) writes one line per request
after the response; health and metrics endpoints are logged at debug level only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sys
from collections.abc import Callable, Collection, MutableMapping
from typing import IO, TYPE_CHECKING, Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from launchready_sdk.context import RequestContext, current
from launchready_sdk.redaction import DEFAULT_REDACTOR, Redactor

if TYPE_CHECKING:
    from launchready_sdk.settings import Settings

ACCESS_LOGGER = "launchready.access"
ERROR_LOGGER = "launchready.error"
# Loggers that install their own handlers; they are routed through the root handler instead.
FOREIGN_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
    "django",
    "django.request",
    "django.server",
    "django.db.backends",
)
_HANDLER_NAME = "launchready"


_current_span: Callable[[], Any] | None = None  # set by telemetry while tracing is on


def trace_ids_from(get_span: Callable[[], Any] | None) -> None:
    """Make `add_trace_ids` read the current span from `get_span` (None: tracing is off)."""
    global _current_span
    _current_span = get_span


def add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: `trace_id` and `span_id` of the current span, when tracing is on."""
    get_span = _current_span
    if get_span is None:
        return event_dict
    ctx = get_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: add the current request's `request_id` (None outside a request)."""
    ctx = current()
    event_dict.setdefault("request_id", ctx.request_id if ctx is not None else None)
    return event_dict


def _render_json(obj: Any, **_: Any) -> str:
    try:
        return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # lone surrogates and other text orjson refuses: escape everything
        return json.dumps(obj, default=repr, ensure_ascii=True)


def _renderer(settings: Settings, stream: IO[str]) -> Processor:
    if settings.log_format == "console":
        isatty = getattr(stream, "isatty", lambda: False)()
        return structlog.dev.ConsoleRenderer(colors=isatty, exception_formatter=_plain_traceback)
    return structlog.processors.JSONRenderer(serializer=_render_json)


def _plain_traceback(sio: Any, exc_info: Any) -> None:
    structlog.dev.plain_traceback(sio, exc_info)


def _exception_processor(settings: Settings) -> Processor:
    if settings.log_format == "console":
        return _noop
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )


def _noop(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return event_dict


def build_redactor(settings: Settings) -> Redactor:
    """The redactor the settings ask for (extra keys, email policy)."""
    return Redactor(extra_keys=settings.redact_keys, email=settings.redact_email)


def configure_logging(
    settings: Settings, *, stream: TextIO | None = None, redactor: Redactor | None = None
) -> JsonLineWriter | None:
    """Route structlog and stdlib logging through the SDK's processors to `stream` (stdout).

    Returns the writer the access log uses for its per-request line (None for console output).
    """
    out = stream if stream is not None else sys.stdout
    redactor = redactor or build_redactor(settings)
    level = logging.getLevelName(settings.log_level)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Processor] = [_exception_processor(settings), redactor.processor]
    renderer = _renderer(settings, out)
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.handlers = [h for h in root.handlers if not _writes_to_console(h) or h is handler]
    root.setLevel(level)
    adopt_foreign_loggers(access_log=settings.access_log)
    if settings.log_format != "json":
        return None
    return JsonLineWriter(out, level, add_trace_ids)


def _writes_to_console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return type(handler) is logging.StreamHandler and stream in (sys.stdout, sys.stderr)


def adopt_foreign_loggers(*, access_log: bool = True) -> None:
    """Send uvicorn's, gunicorn's and Django's loggers through the root handler.

    Servers install handlers of their own when they start; calling this again at start-up
    takes their lines back. With the SDK's access log on, the server's own access log is
    raised to WARNING so each request is logged once.
    """
    for name in FOREIGN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    if access_log:
        for name in ("uvicorn.access", "gunicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


class NamedLogger:
    """A logger that resolves structlog's configuration when it logs, not when it is made.

    Modules create their loggers at import, before `LaunchReady()` configures logging; this
    keeps them following whatever configuration is in force at each call.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def bind(self, **new_values: Any) -> NamedLogger:
        """A logger with more fields bound."""
        return NamedLogger({**self._values, **new_values})

    def __getattr__(self, method: str) -> Any:
        return getattr(structlog.get_logger().bind(**self._values), method)


def get_logger(name: str | None = None, **initial_values: Any) -> NamedLogger:
    """A structlog logger whose lines carry `logger=<name>` (default: the caller's module)."""
    if name is None:
        name = sys._getframe(1).f_globals.get("__name__", "app")
    return NamedLogger({"logger": name, **initial_values})


class JsonLineWriter:
    """The access line's fast path: one JSON line with the pipeline's fields and timestamp format.

    The access line is written on every request, so it skips structlog's per-call machinery:
    its free-text fields are redacted by the caller, the line is rendered straight to bytes,
    and inside an event loop the flush is deferred to the end of the loop iteration, so a
    burst of concurrent requests costs one write system call. Lines below `level` are dropped.
    """

    def __init__(self, stream: TextIO, level: int, trace_ids: Processor | None = None) -> None:
        self.stream = stream
        self.level = level
        self._trace_ids = trace_ids
        self._raw: Any = getattr(stream, "buffer", None)
        self._flush_pending = False

    def line(
        self, level: int, logger: str, event: str, ctx: RequestContext | None = None
    ) -> dict[str, Any]:
        """The leading fields of a line: timestamp, level, logger, event and request_id (of
        `ctx`, else of the request being served)."""
        if ctx is None:
            ctx = current()
        line = {
            "timestamp": datetime.datetime.now(datetime.UTC),
            "level": _LEVEL_NAMES[level],
            "logger": logger,
            "event": event,
            "request_id": ctx.request_id if ctx is not None else None,
        }
        if self._trace_ids is not None:
            self._trace_ids(None, "", line)
        return line

    def emit(self, line: dict[str, Any]) -> None:
        """Render and write one line (fields bound with structlog.contextvars included)."""
        if _structlog_vars:  # only when something was ever bound with structlog.contextvars
            line = {**structlog.contextvars.get_contextvars(), **line}
        try:  # string keys (every line the SDK writes): orjson's fast path
            data = orjson.dumps(line, default=repr, option=_LINE_OPTIONS)
        except TypeError:
            try:
                data = orjson.dumps(line, default=repr, option=_ORJSON_OPTIONS)
            except TypeError:
                data = _render_json(line).encode() + b"\n"
        if self._raw is None:
            self.stream.write(data.decode())
            self.stream.flush()
            return
        self._raw.write(data)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._raw.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        with contextlib.suppress(OSError, ValueError):
            self._raw.flush()


_structlog_vars: dict[str, Any] = getattr(structlog.contextvars, "_CONTEXT_VARS", {"?": None})
_LINE_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | _LINE_OPTIONS
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.ERROR: "error"}
_PATH_CACHE_SIZE = 2048  # redacted access-log paths kept; the table is emptied when full
_PATH_CACHE_MAX_LENGTH = 256  # longer paths (with their query) are never kept


class AccessLogger:
    """Writes the per-request access line and the line for an exception that escaped the app."""

    def __init__(
        self,
        *,
        quiet_paths: Collection[str] = (),
        enabled: bool = True,
        writer: JsonLineWriter | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.quiet_paths = frozenset(quiet_paths)
        self.enabled = enabled
        self._writer = writer
        self._redact = redactor or DEFAULT_REDACTOR
        self._log = get_logger(ACCESS_LOGGER)
        self._errors = get_logger(ERROR_LOGGER)
        self._paths: dict[str, str] = {}

    def __call__(self, ctx: RequestContext, status: int, sent: int, duration_s: float) -> None:
        if not self.enabled:
            return
        try:
            self._write(ctx, status, sent, duration_s)
        except Exception:  # a log line must never fail a request
            logging.getLogger(ERROR_LOGGER).debug("access log line dropped", exc_info=True)

    def _write(self, ctx: RequestContext, status: int, sent: int, duration_s: float) -> None:
        if ctx.route_path in self.quiet_paths:
            level = logging.DEBUG
        else:
            level = logging.ERROR if status >= 500 else logging.INFO
        writer = self._writer
        if writer is not None and level < writer.level:
            return
        path = ctx.path
        if ctx.query:
            path = f"{path}?{ctx.query.decode('latin-1')}"
        # Method, route, status, sizes, address and request ID are safe by construction; the
        # path, the client's rejected ID and fields the app bound may carry secrets.
        line = writer.line(level, ACCESS_LOGGER, "request", ctx) if writer is not None else {}
        line["method"] = ctx.method
        line["route"] = ctx.route
        line["path"] = self._redacted_path(path) if writer is not None else path
        line["status"] = status
        line["duration_ms"] = int(duration_s * 1_000_000) / 1000
        line["bytes"] = sent
        line["client_ip"] = ctx.client_ip
        if ctx.client_request_id is not None or ctx.fields:
            extra = {"client_request_id": ctx.client_request_id, **ctx.fields}
            if extra["client_request_id"] is None:
                del extra["client_request_id"]
            redacted = self._redact(extra) if writer is not None else extra
            if isinstance(redacted, dict):
                line.update(redacted)
        if writer is None:
            self._log.log(level, "request", **line)
        else:
            writer.emit(line)

    @property
    def remembered_paths(self) -> tuple[str, ...]:
        """The raw paths whose redacted form is remembered (bounded; long paths never kept)."""
        return tuple(self._paths)

    def _redacted_path(self, path: str) -> str:
        """`redact(path)`, remembered: most requests repeat a path seen shortly before."""
        known = self._paths.get(path)
        if known is None:
            known = str(self._redact(path))
            if len(path) > _PATH_CACHE_MAX_LENGTH:  # long paths are redacted each time
                return known
            if len(self._paths) >= _PATH_CACHE_SIZE:
                self._paths.clear()
            self._paths[path] = known
        return known

    def error(self, ctx: RequestContext, exc: BaseException) -> None:
        """Log an exception that escaped the app, as a structured, redacted traceback."""
        try:
            self._errors.error(
                "request.unhandled_exception", method=ctx.method, path=ctx.path, exc_info=exc
            )
        except Exception:
            logging.getLogger(ERROR_LOGGER).debug("error log line dropped", exc_info=True)
