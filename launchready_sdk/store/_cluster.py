"""Redis Cluster: commands routed to the node serving their key's slot, on the SDK's client.

`ClusterClient` keeps one pipelining `RespClient` per node and a table of the 16,384 slots,
loaded with `CLUSTER SLOTS` from the URL's seed nodes (then from any node it knows). A
command goes to the master of its first key's slot (CRC16 of the key, or of its `{hash tag}`,
computed in C by `binascii.crc_hqx`); keyless commands go to any master, and `SCRIPT LOAD`
to every master, since each node keeps its own script cache.

- `MOVED slot host:port`: the slot's entry is corrected, the command resent there, and the
  whole table reloaded in the background (a resharding or a failover moved more than one).
- `ASK slot host:port`: the command is resent once to that node preceded by `ASKING`, in the
  same write on the same connection, and the table is left alone (the slot is migrating).
- A node that cannot be reached, or `CLUSTERDOWN`: the command fails (the store's breaker
  counts it) and the table is reloaded before the next command, at most every
  `REFRESH_INTERVAL_S`.
- A table that leaves slots uncovered is logged once per load; a command for such a slot
  fails with `ConnectionError`, never hangs.

Why not redis-py's cluster client: each command there costs far more CPU than the command
itself (a lock, a node lookup through several layers, a connection checked out of a pool),
and the SDK sends one command per limited or cached request. Topology here is one command,
`CLUSTER SLOTS`, read the way every client reads it; the SDK's keys are laid out so that each
script touches one slot (see `ratelimit`, `cache`, `idempotency`).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import time
from collections.abc import Callable
from typing import Any

from launchready_sdk.logs import get_logger
from launchready_sdk.store._resp import Arg, RedisReplyError, RespClient, encode_command
from launchready_sdk.store._url import RedisURL

_log = get_logger("launchready.stores")

SLOTS = 16384
MAX_REDIRECTS = 3
REFRESH_INTERVAL_S = 0.5
_KEYLESS = frozenset({b"PING", b"SCRIPT", b"TIME", b"INFO", b"CLUSTER", b"ASKING", b"DBSIZE"})
Address = tuple[str, int]


def key_slot(key: bytes) -> int:
    """The cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


def command_key(args: tuple[Arg, ...]) -> bytes | None:
    """The key a command is routed by (the first one), or None for a keyless command."""
    name = _bytes(args[0]).upper()
    if name in (b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO"):
        return _bytes(args[3]) if len(args) > 3 and int(args[2]) > 0 else None
    if name in _KEYLESS or len(args) < 2:
        return None
    return _bytes(args[1])


def _bytes(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else str(value).encode()


class ClusterClient:
    """Routes each command to the node serving its key's slot; follows MOVED and ASK.

    Args:
        target: a parsed `redis+cluster://` URL (its hosts are the seed nodes).
        timeout_s: per-command timeout.
        connect_timeout_s: connect timeout of each node, and of loading the slot table.
    """

    def __init__(self, target: RedisURL, *, timeout_s: float, connect_timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.nodes: dict[Address, RespClient] = {}
        self.slots: list[Address | None] = [None] * SLOTS
        self.uncovered = SLOTS
        self._loaded = False
        self._stale = False
        self._refreshed_at = -1e9
        self._refreshing: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self._url = _node_url(target)
        self.on_connect_error: Callable[[BaseException], None] | None = None

    def node(self, address: Address) -> RespClient:
        """The client of one node (made on first use)."""
        client = self.nodes.get(address)
        if client is None:

            async def resolve() -> Address:
                return address

            client = RespClient(
                self._url,
                timeout_s=self.timeout_s,
                connect_timeout_s=self.connect_timeout_s,
                resolve=resolve,
            )
            client.on_connect_error = self.on_connect_error
            self.nodes[address] = client
        return client

    async def execute(self, *args: Arg, timeout_s: float | None = None) -> Any:
        """Send one command to the node serving its key; MOVED and ASK are followed."""
        if not self._loaded or self._stale:
            await self.refresh()
        if _bytes(args[0]).upper() == b"SCRIPT":
            return await self._on_every_master(args)
        return await self._routed(command_key(args), encode_command(args), timeout_s)

    async def execute_raw(
        self, command: bytes, key: bytes | None = None, timeout_s: float | None = None
    ) -> Any:
        """`execute` for a command already encoded, routed by `key`."""
        if not self._loaded or self._stale:
            await self.refresh()
        return await self._routed(key, command, timeout_s)

    async def _routed(self, key: bytes | None, command: bytes, timeout_s: float | None) -> Any:
        if key is None:
            address = self._any_master()
        else:
            slot = key_slot(key)
            found = self.slots[slot]
            if found is None:
                raise ConnectionError(f"slot {slot} is not served by any node of the cluster")
            address = found
        asking = False
        for _ in range(MAX_REDIRECTS + 1):
            client = self.node(address)
            try:
                if asking:
                    _, reply = await asyncio.gather(
                        client.execute("ASKING", timeout_s=timeout_s),
                        client.execute_raw(command, None, timeout_s),
                    )
                    return reply
                return await client.execute_raw(command, None, timeout_s)
            except RedisReplyError as exc:
                text = str(exc)
                if text.startswith(("MOVED ", "ASK ")):
                    kind, slot_text, where = text.split(" ", 2)
                    address = _address(where, address)
                    asking = kind == "ASK"
                    if not asking:
                        self.slots[int(slot_text)] = address
                        self._stale = True
                    continue
                if text.startswith(("CLUSTERDOWN", "TRYAGAIN")):
                    self._stale = True
                raise
            except OSError:  # a node gone (failover?): reload the table before the next command
                self._stale = True
                raise
        raise ConnectionError("too many cluster redirections")

    @property
    def connections(self) -> int:
        """How many node connections are open now (over every event loop)."""
        return sum(client.connections for client in list(self.nodes.values()))

    def reset(self) -> None:
        """Reload the slot table before the next command (a node said it cannot serve)."""
        self._stale = True

    async def ping_all(self) -> None:
        """PING every master (readiness)."""
        if not self._loaded or self._stale:
            await self.refresh()
        masters = sorted({a for a in self.slots if a is not None})
        if not masters:
            raise ConnectionError("the cluster has no master serving a slot")
        await asyncio.gather(*(self.node(a).execute("PING") for a in masters))
        if self.uncovered:
            raise ConnectionError(f"{self.uncovered} slots of the cluster are served by no node")

    async def refresh(self) -> None:
        """Load the slot table (one load at a time; at most one per REFRESH_INTERVAL_S)."""
        loop = asyncio.get_running_loop()
        refreshing = self._refreshing.get(loop)
        if refreshing is None:
            if self._loaded and time.monotonic() - self._refreshed_at < REFRESH_INTERVAL_S:
                return
            for old in [known for known in list(self._refreshing) if known.is_closed()]:
                self._refreshing.pop(old, None)
            refreshing = self._refreshing[loop] = loop.create_future()
            task = loop.create_task(self._load())
            task.add_done_callback(lambda done: self._loaded_table(loop, done))
        await asyncio.shield(refreshing)

    def _loaded_table(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
        future = self._refreshing.pop(loop, None)
        self._refreshed_at = time.monotonic()
        if future is None or future.done():
            return
        exc = None if task.cancelled() else task.exception()
        if task.cancelled():
            future.set_exception(ConnectionError("loading the cluster's slots was cancelled"))
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(None)

    async def _load(self) -> None:
        known = sorted({a for a in self.slots if a is not None})
        candidates = list(dict.fromkeys([*known, *self.target.hosts]))
        last: BaseException | None = None
        for address in candidates:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    reply = await self.node(address).execute("CLUSTER", "SLOTS")
            except (OSError, TimeoutError, RedisReplyError) as exc:
                last = exc
                continue
            self._apply(reply, address)
            return
        raise ConnectionError(
            f"no node of the cluster answered CLUSTER SLOTS ({type(last).__name__})"
        )

    def _apply(self, reply: Any, asked: Address) -> None:
        slots: list[Address | None] = [None] * SLOTS
        for entry in reply or []:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            address = (host or asked[0], int(master[1]))
            for slot in range(start, min(end, SLOTS - 1) + 1):
                slots[slot] = address
        uncovered = slots.count(None)
        if uncovered and uncovered != self.uncovered:
            _log.warning(
                "store.cluster_incomplete",
                uncovered_slots=uncovered,
                detail="commands for keys in those slots fail until the cluster covers them",
            )
        self.slots, self.uncovered = slots, uncovered
        self._loaded, self._stale = True, False

    def _any_master(self) -> Address:
        for address in self.slots:
            if address is not None:
                return address
        raise ConnectionError("the cluster has no master serving a slot")

    async def _on_every_master(self, args: tuple[Arg, ...]) -> Any:
        masters = sorted({a for a in self.slots if a is not None})
        replies = await asyncio.gather(*(self.node(a).execute(*args) for a in masters))
        return replies[0] if replies else None

    async def aclose(self) -> None:
        """Close every node's connection."""
        for client in list(self.nodes.values()):
            with contextlib.suppress(Exception):
                await client.aclose()


def _address(text: str, current: Address) -> Address:
    host, _, port = text.rpartition(":")
    return (host or current[0], int(port))


def _node_url(target: RedisURL) -> str:
    """A URL for `RespClient` carrying the cluster's credentials and TLS (the host is set by
    the node's resolver)."""
    import urllib.parse

    scheme = "rediss" if target.tls else "redis"
    auth = ""
    if target.password is not None:
        user = urllib.parse.quote(target.username or "", safe="")
        auth = f"{user}:{urllib.parse.quote(target.password, safe='')}@"
    query = ""
    if target.tls:
        options = {"ssl_cert_reqs": target.cert_reqs,
                   "ssl_check_hostname": "true" if target.check_hostname else "false"}  # fmt: skip
        for name, value in (("ssl_ca_certs", target.ca_certs), ("ssl_certfile", target.certfile),
                            ("ssl_keyfile", target.keyfile)):  # fmt: skip
            if value:
                options[name] = value
        query = "?" + urllib.parse.urlencode(options)
    return f"{scheme}://{auth}cluster-node:6379/0{query}"
