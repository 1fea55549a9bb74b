"""The workers behind one port: each publishes its figures to a per-instance directory, and
the worker that takes a scrape adds its siblings' figures to its own.

`uvicorn --workers N` and `gunicorn -w N -k uvicorn.workers.UvicornWorker` start N processes
that accept on one socket; a scrape of `/metrics` lands on any one of them. So every worker
writes its figures (`latency._exposition`, JSON) to `<directory>/<pid>.json` about once a
second while it serves traffic, with an atomic rename, and `/metrics` merges the files of the
other live workers into the figures of the worker answering. Figures are at most
`PUBLISH_INTERVAL_S` (plus a busy worker's delay) old.

Which directory: `metrics_dir` when set (one per instance, emptied at each deploy, like
`PROMETHEUS_MULTIPROC_DIR`); there the figures of a worker that exited are kept, so the
instance's counters never go down when a worker is replaced. Otherwise a directory of its
own under the system's temporary directory, named after the service, the address the server
listens on (from the first request's `scope["server"]`) and the server's master process (the
workers' parent), so two instances on one host, or a restart, never mix; there a worker that
exited takes its figures with it (Prometheus' `rate()` reads the drop as a counter reset).

Security stance: the directory is created 0700 and used only when it belongs to this user
and is not a symbolic link; files are JSON, parsed by `orjson`, and one that does not parse is
skipped. Limits, candidly: two separate servers on one host that share one `metrics_dir`
would be summed together; in a single process nothing is merged (its own file is skipped).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from launchready_sdk.latency._exposition import Figures, to_json
from launchready_sdk.logs import get_logger

_log = get_logger("launchready.latency")

PUBLISH_INTERVAL_S = 1.0
_STALE_S = 3600.0  # a live pid whose file is this old is another process that reused it


class WorkerShare:
    """Publishes this worker's figures and reads its siblings'.

    Args:
        service: the service name (part of the automatic directory's name).
        directory: `metrics_dir`, or None for the automatic per-instance directory.
    """

    def __init__(self, service: str, directory: str | None = None) -> None:
        self.service = service
        self.explicit = directory is not None
        self.directory: Path | None = Path(directory) if directory else None
        self.pid = os.getpid()
        self._ready = False
        self._last_total = -1
        self._last_write = 0.0

    def bind(self, server: Any) -> None:
        """Learn the listening address (the first request's `scope["server"]`)."""
        if self.directory is None:
            digest = hashlib.sha256(repr(server).encode()).hexdigest()[:12]
            name = f"{_safe(self.service)}-{digest}-{os.getppid()}"
            self.directory = Path(tempfile.gettempdir()) / f"launchready-{os.getuid()}" / name
        if not self._ready:
            self._ready = _prepare(self.directory, own_parent=not self.explicit)

    @property
    def ready(self) -> bool:
        return self._ready

    def publish(self, figures_fn: Any, total: int, *, force: bool = False) -> bool:
        """Write this worker's figures when they changed (`total` requests) or every 10 s."""
        if not self._ready or self.directory is None:
            return False
        now = time.monotonic()
        if not force and total == self._last_total and now - self._last_write < 10:
            return False
        data = orjson.dumps(to_json(figures_fn()))
        path = self.directory / f"{self.pid}.json"
        tmp = self.directory / f".{self.pid}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except OSError:
            _log.debug("latency.publish_failed", exc_info=True)
            return False
        self._last_total, self._last_write = total, now
        return True

    def siblings(self) -> list[Figures]:
        """The figures of the other workers of this instance (dead ones per the policy)."""
        out: list[Figures] = []
        for entry, _alive_now in self._others():
            try:
                with open(entry.path, "rb") as raw:
                    figures = orjson.loads(raw.read())
            except (OSError, orjson.JSONDecodeError):
                continue
            if isinstance(figures, dict) and isinstance(figures.get("families"), dict):
                figures.setdefault("windows", {})
                figures.setdefault("budgets", {})
                out.append(figures)
        return out

    def live_siblings(self) -> int:
        """How many other workers of this instance are running and publishing."""
        return sum(1 for _, alive in self._others() if alive)

    def _others(self) -> list[tuple[os.DirEntry[str], bool]]:
        """The other workers' files, each with whether its worker runs; in the automatic
        directory a dead worker's file is removed instead (its figures go with it)."""
        if not self._ready or self.directory is None:
            return []
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        out = []
        for entry in entries:
            name = entry.name
            if not name.endswith(".json") or not name[:-5].isdigit():
                continue
            pid = int(name[:-5])
            if pid == self.pid:
                continue
            alive = _alive(pid, entry)
            if not alive and not self.explicit:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            out.append((entry, alive))
        return out

    def remove(self) -> None:
        """Remove this worker's file at shutdown (automatic directory only: an explicit
        `metrics_dir` keeps it, so the instance's counters do not go down)."""
        if self._ready and self.directory is not None and not self.explicit:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / f"{self.pid}.json")
            with contextlib.suppress(OSError):  # the last worker out removes the directory
                os.rmdir(self.directory)


def _alive(pid: int, entry: os.DirEntry[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return time.time() - entry.stat().st_mtime < _STALE_S
    except OSError:
        return False


def _prepare(directory: Path, own_parent: bool) -> bool:
    """Create the directory (0700) and check it (and the automatic one's parent) is ours and
    not a link."""
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        for path in (directory.parent, directory) if own_parent else (directory,):
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
                detail = "not a directory of this user; workers are not merged"
                _log.warning("latency.metrics_dir_refused", path=str(path), detail=detail)
                return False
    except OSError as exc:
        _log.warning("latency.metrics_dir_unusable", path=str(directory), error=type(exc).__name__)
        return False
    return True


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "app"
