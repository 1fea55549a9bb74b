"""Where open incidents and the alerts sent for them are kept: a file, Redis, or memory.

An incident is opened once (`open` returns the one already open, if another process or an
earlier run opened it); each alert goes to each channel once (`claim` before sending, which
also says when it was sent already or is being sent by another process; `delivered` after);
and it is closed once (`close` returns it only to the caller that closed it, with the channels
that got its `down`, so `up` goes exactly there). A closed incident is kept until its `up`
alerts are out (`finish`), so a restart in between still sends them.

- `FileStore(path)`: a JSON file rewritten atomically (temporary file, fsync, rename) after
  each change, created 0600, locked (`<path>.lock`) so two probes cannot share it. A file that
  does not parse is moved aside (`<path>.corrupt-<time>`) and the probe starts empty, with an
  error line: monitoring goes on, at the risk of one repeated `down`. A write that fails at run
  time is logged and retried at the next change; the incident stays in memory meanwhile.
- `FileStore(None)`: memory only; a restart forgets open incidents.
- `RedisIncidentStore`: one hash per incident in the SDK's Redis (`LAUNCHREADY_REDIS_URL`,
  keys under `LAUNCHREADY_REDIS_PREFIX`), every step one Lua script, so several probe
  processes checking the same targets share one incident and send each alert once.

Security stance: the state holds target names, URLs as written (`${NAME}` not expanded),
reasons and opaque channel ids (hashes), never a channel URL or a header value.

Limits, candidly: while Redis is unreachable each process acts on what it knows itself and
alerts rather than stays silent, so two processes may both send a `down` then. An incident
record expires from Redis 30 days after its last check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.store import RedisStore, Script

FORMAT_VERSION = 1
REDIS_TTL_S = 30 * 86400
CLAIM_TTL_MS = 60_000  # longer than one delivery (channels' deadline)
STORE_TIMEOUT_S = 2.0  # one Redis command of the probe's
EVENTS = ("down", "up")

_log = get_logger("launchready.probe")


# What `claim` answers: send it; it was sent already; another process is sending it now; the
# incident is no longer this one (closed and replaced).
Claim = Literal["send", "sent", "busy", "gone"]


class StateError(Exception):
    """The state cannot be used (unwritable, locked by another probe); raised at start-up."""


@dataclasses.dataclass
class Incident:
    """One outage of one target and the channels its alerts reached."""

    key: str  # the target's name
    id: str
    target: str  # the URL as written
    since: float  # epoch seconds: start of the first failed check
    reason: str
    failures: int
    closed: float | None = None  # epoch seconds it closed; None while open
    sent: dict[str, set[str]] = dataclasses.field(
        default_factory=lambda: {event: set() for event in EVENTS}
    )
    rounds: int = 0  # delivery rounds spent on alerts still pending (not persisted)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "since": self.since,
            "reason": self.reason,
            "failures": self.failures,
            "closed": self.closed,
            "sent": {event: sorted(ids) for event, ids in self.sent.items()},
        }

    @classmethod
    def from_json(cls, key: str, data: Any) -> Incident:
        """Parse a stored record; `ValueError` when it is malformed."""
        if not isinstance(data, dict):
            raise ValueError("an incident must be an object")
        try:
            sent = data.get("sent") or {}
            incident = cls(
                key=key,
                id=str(data["id"]),
                target=str(data["target"]),
                since=float(data["since"]),
                reason=str(data["reason"]),
                failures=int(data["failures"]),
                closed=None if data.get("closed") is None else float(data["closed"]),
                sent={event: {str(c) for c in sent.get(event, [])} for event in EVENTS},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"incident {key!r} is malformed ({exc})") from None
        return incident


class IncidentStore(Protocol):
    description: str

    async def load(self, keys: Collection[str]) -> dict[str, Incident]: ...

    async def open(self, incident: Incident) -> tuple[Incident, bool]: ...

    async def is_open(self, incident: Incident) -> bool: ...

    async def claim(self, incident: Incident, event: str, channel: str) -> Claim: ...

    async def delivered(self, incident: Incident, event: str, channel: str) -> None: ...

    async def close(self, incident: Incident, closed: float) -> Incident | None: ...

    async def finish(self, incident: Incident) -> None: ...

    async def aclose(self) -> None: ...


class FileStore:
    """Incidents in memory, written to `path` after each change (None: memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.description = f"file {path}" if path else "memory (a restart forgets incidents)"
        self._incidents: dict[str, Incident] = {}
        self._lock_fd: int | None = None
        self._write_lock = asyncio.Lock()
        self._write_failing = False

    # -- start-up -----------------------------------------------------------------------

    def acquire(self) -> None:
        """Check the file can be written and lock it; `StateError` saying why not."""
        if self.path is None:
            return
        path = self.path
        if path.is_dir():
            raise StateError(f"--state {path} is a directory; give a file name")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot write the state next to {path}: {_why(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(
                f"another launchready probe is using {path} (its lock {path}.lock is held); "
                "give each probe its own --state, or share incidents through Redis"
            ) from None
        self._lock_fd = fd
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            self._unlock()
            raise StateError(f"cannot write the state file {path}: permission denied")

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def load(self, keys: Collection[str]) -> dict[str, Incident]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            raw = self.path.read_bytes()
            data = orjson.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError(f"not a version {FORMAT_VERSION} probe state")
            records = data.get("incidents")
            if not isinstance(records, dict):
                raise ValueError("no incidents object")
            incidents = {key: Incident.from_json(key, value) for key, value in records.items()}
        except (OSError, ValueError) as exc:
            self._set_aside(str(exc))
            return {}
        dropped = sorted(set(incidents) - set(keys))
        for key in dropped:
            _log.info("probe.incident_forgotten", target=key, why="no longer a target")
            del incidents[key]
        self._incidents = incidents
        if dropped:
            await self._save()
        return {key: dataclasses.replace(i, sent=_copy(i.sent)) for key, i in incidents.items()}

    def _set_aside(self, problem: str) -> None:
        if self.path is None:
            return
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            moved = str(aside)
        except OSError as exc:
            moved = f"not moved ({_why(exc)})"
        _log.error(
            "probe.state_corrupt",
            state=str(self.path),
            problem=problem[:200],
            moved_to=moved,
            consequence="starting without incidents; an open one may send its down again",
        )

    # -- the store's steps ----------------------------------------------------------------

    async def open(self, incident: Incident) -> tuple[Incident, bool]:
        known = self._incidents.get(incident.key)
        if known is not None and known.closed is None:
            return dataclasses.replace(known, sent=_copy(known.sent)), False
        self._incidents[incident.key] = dataclasses.replace(incident, sent=_copy(incident.sent))
        await self._save()
        return incident, True

    async def is_open(self, incident: Incident) -> bool:
        known = self._incidents.get(incident.key)
        return known is not None and known.id == incident.id and known.closed is None

    async def claim(self, incident: Incident, event: str, channel: str) -> Claim:
        known = self._incidents.get(incident.key)
        if known is None or known.id != incident.id:
            return "gone"
        return "sent" if channel in known.sent[event] else "send"

    async def delivered(self, incident: Incident, event: str, channel: str) -> None:
        known = self._incidents.get(incident.key)
        if known is not None and known.id == incident.id:
            known.sent[event].add(channel)
            await self._save()

    async def close(self, incident: Incident, closed: float) -> Incident | None:
        known = self._incidents.get(incident.key)
        if known is None or known.id != incident.id or known.closed is not None:
            return None
        known.closed = closed
        await self._save()
        return dataclasses.replace(known, sent=_copy(known.sent))

    async def finish(self, incident: Incident) -> None:
        known = self._incidents.get(incident.key)
        if known is not None and known.id == incident.id and known.closed is not None:
            del self._incidents[incident.key]
            await self._save()

    async def aclose(self) -> None:
        self._unlock()

    # -- writing --------------------------------------------------------------------------

    async def _save(self) -> None:
        if self.path is None:
            return
        async with self._write_lock:  # one write at a time, each of the latest state
            data = orjson.dumps(
                {
                    "version": FORMAT_VERSION,
                    "incidents": {k: i.as_json() for k, i in self._incidents.items()},
                },
                option=orjson.OPT_INDENT_2,
            )
            try:
                await asyncio.to_thread(_write_atomically, self.path, data)
            except OSError as exc:
                _log.error(
                    "probe.state_write_failed",
                    state=str(self.path),
                    error=_why(exc),
                    consequence="kept in memory; a restart now would forget it",
                )
                self._write_failing = True
                return
            if self._write_failing:
                self._write_failing = False
                _log.info("probe.state_write_recovered", state=str(self.path))


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _copy(sent: dict[str, set[str]]) -> dict[str, set[str]]:
    return {event: set(ids) for event, ids in sent.items()}


# -- Redis ------------------------------------------------------------------------------------

_OPEN = Script(
    """
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'data', ARGV[2], 'state', 'open')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return false
"""
)
_IS_OPEN = Script(
    """
local id, state = unpack(redis.call('HMGET', KEYS[1], 'id', 'state'))
if id == ARGV[1] and state == 'open' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
)
_CLAIM = Script(
    """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return 3
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  return 2
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
"""
)
_CLAIMS: dict[int, Claim] = {1: "send", 2: "sent", 3: "gone", 0: "busy"}
_DELIVERED = Script(
    """
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('HSET', KEYS[1], ARGV[2], '1')
end
return 1
"""
)
_CLOSE = Script(
    """
local id, state = unpack(redis.call('HMGET', KEYS[1], 'id', 'state'))
if id ~= ARGV[1] or state ~= 'open' then
  return false
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed', ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
)
_FINISH = Script(
    """
local id, state = unpack(redis.call('HMGET', KEYS[1], 'id', 'state'))
if id == ARGV[1] and state == 'closed' then
  redis.call('DEL', KEYS[1])
end
return 1
"""
)


class RedisIncidentStore:
    """Incidents in Redis, shared by every probe process using the same prefix.

    When Redis cannot be reached a step acts on the caller's own view (its incident, the
    channels it sent to) and logs it: an alert goes out rather than being lost.
    """

    def __init__(self, store: RedisStore, *, token: str) -> None:
        self.store = store
        self.description = f"redis (keys under {store.prefix})"
        self._token = token  # this process's claim on a delivery

    def _key(self, target_key: str) -> str:
        digest = hashlib.sha256(target_key.encode()).hexdigest()[:24]
        # A hash tag: the incident and its delivery claims share a slot on a Redis Cluster.
        return self.store.key("incident", "{" + digest + "}")

    async def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return await self.store.run_script(script, keys, args)

    async def load(self, keys: Collection[str]) -> dict[str, Incident]:
        async def one(key: str) -> tuple[str, Incident | None]:
            reply = await self.store.execute("HGETALL", self._key(key))
            return key, _parse_hash(key, reply) if reply else None

        try:
            found = await asyncio.gather(*(one(k) for k in keys))
        except StoreUnavailable as exc:
            _log.warning("probe.state_unavailable", step="load", error=str(exc))
            return {}
        return {key: incident for key, incident in found if incident is not None}

    async def open(self, incident: Incident) -> tuple[Incident, bool]:
        data = orjson.dumps(incident.as_json()).decode()
        try:
            reply = await self._run(
                _OPEN, [self._key(incident.key)], [incident.id, data, REDIS_TTL_S]
            )
        except StoreUnavailable as exc:
            _unavailable("open", incident, exc, "alerting on this process's own view")
            return incident, True
        if reply is None:
            return incident, True
        existing = _parse_hash(incident.key, reply)
        return (existing, False) if existing is not None else (incident, True)

    async def is_open(self, incident: Incident) -> bool:
        try:
            reply = await self._run(_IS_OPEN, [self._key(incident.key)], [incident.id, REDIS_TTL_S])
        except StoreUnavailable:
            return True
        return bool(reply)

    async def claim(self, incident: Incident, event: str, channel: str) -> Claim:
        key = self._key(incident.key)
        claim_key = f"{key}:claim:{incident.id}:{event}:{channel}"
        args = [incident.id, f"sent:{event}:{channel}", self._token, CLAIM_TTL_MS]
        try:
            reply = await self._run(_CLAIM, [key, claim_key], args)
        except StoreUnavailable:
            return "sent" if channel in incident.sent[event] else "send"
        return _CLAIMS.get(reply, "busy")

    async def delivered(self, incident: Incident, event: str, channel: str) -> None:
        args = [incident.id, f"sent:{event}:{channel}"]
        try:
            await self._run(_DELIVERED, [self._key(incident.key)], args)
        except StoreUnavailable as exc:
            _unavailable("delivered", incident, exc, "another process may send it again")

    async def close(self, incident: Incident, closed: float) -> Incident | None:
        try:
            reply = await self._run(_CLOSE, [self._key(incident.key)], [incident.id, closed])
        except StoreUnavailable as exc:
            _unavailable("close", incident, exc, "closing on this process's own view")
            return dataclasses.replace(incident, closed=closed, sent=_copy(incident.sent))
        return _parse_hash(incident.key, reply) if reply else None

    async def finish(self, incident: Incident) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._run(_FINISH, [self._key(incident.key)], [incident.id])

    async def aclose(self) -> None:
        await self.store.aclose()


def _unavailable(step: str, incident: Incident, exc: Exception, consequence: str) -> None:
    _log.warning(
        "probe.state_unavailable",
        step=step,
        target=incident.key,
        error=str(exc),
        consequence=consequence,
    )


def _parse_hash(key: str, reply: Any) -> Incident | None:
    """An incident from HGETALL's flat reply; None (logged) when it is malformed."""
    if not isinstance(reply, list):
        return None
    fields = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in zip(reply[::2], reply[1::2], strict=True)
    }
    try:
        incident = Incident.from_json(key, orjson.loads(fields["data"]))
    except (KeyError, ValueError) as exc:
        _log.error("probe.state_corrupt", target=key, problem=str(exc)[:200])
        return None
    incident.id = fields.get("id", incident.id)
    if fields.get("state") == "closed":
        incident.closed = float(fields.get("closed") or 0.0)
    for name in fields:
        kind, _, channel = name.partition(":")[2].partition(":")
        if name.startswith("sent:") and kind in EVENTS and channel:
            incident.sent[kind].add(channel)
    return incident
