"""Private Redis topologies for tests: a TLS server, master + replica + sentinel, a cluster.

Every process is the test's own (a free port, a temporary directory), and `stop()` ends it.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.conftest import PrivateRedis, free_port


def _binary() -> str:
    found = shutil.which("redis-server")
    assert found, "redis-server is not installed"
    return found


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisProcess(PrivateRedis):
    """One redis-server (or sentinel) with the given arguments, waited for until it answers;
    paused, resumed and killed as `PrivateRedis` is."""

    def __init__(self, tmp: Path, name: str, args: list[str], port: int | None = None) -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.dir)
        if port is not None:
            self.port, self.url = port, f"redis://127.0.0.1:{port}/0"
        self.args = args
        self._log: Any = None

    def start(self, ping: bool = True) -> RedisProcess:  # type: ignore[override]
        base = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip
        self._log = (self.dir / "log").open("wb")
        self.proc = subprocess.Popen(
            [_binary(), *self.args[:1], *base, *self.args[1:]]
            if self.args and self.args[0].endswith(".conf")
            else [_binary(), *base, *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if ping:
            self.wait()
        return self

    def wait(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis on {self.port} did not start: {(self.dir / 'log').read_text()}")

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, **kwargs)

    def stop(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


class TLSRedis:
    """A redis-server that speaks only TLS, its certificate issued by a trustme CA."""

    def __init__(self, tmp: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        chain, key = tmp / "server.pem", tmp / "server.key"
        cert.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        other = trustme.CA()
        self.wrong_ca_path = tmp / "other-ca.pem"
        other.cert_pem.write_to_path(str(self.wrong_ca_path))
        self.port = free_port()
        self.server = RedisProcess(
            tmp, "tls",
            ["--tls-port", str(self.port), "--tls-cert-file", str(chain), "--tls-key-file",
             str(key), "--tls-ca-cert-file", str(self.ca_path), "--tls-auth-clients", "no"],
            port=0,
        )  # fmt: skip

    def start(self) -> TLSRedis:
        self.server.port = 0
        self.server.start(ping=False)
        deadline = time.monotonic() + 10
        context = ssl.create_default_context(cafile=str(self.ca_path))
        while time.monotonic() < deadline:
            try:
                raw = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("TLS redis did not start")

    def url(self, query: str) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?{query}"

    def stop(self) -> None:
        self.server.stop()


class SentinelSet:
    """A master, one replica and one sentinel watching them as `mymaster`."""

    def __init__(self, tmp: Path) -> None:
        self.master = RedisProcess(tmp, "master", [])
        self.replica = RedisProcess(tmp, "replica", [])
        self.sentinel_port = free_port()
        self.tmp = tmp
        self.sentinel: RedisProcess | None = None

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        conf = self.tmp / "sentinel.conf"
        conf.write_text(
            f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 4000\n"
            "sentinel parallel-syncs mymaster 1\n"
        )
        self.sentinel = RedisProcess(
            self.tmp, "sentinel", [str(conf), "--sentinel"], port=self.sentinel_port
        )
        self.sentinel.start()
        self._wait(lambda: self.sentinel_client().sentinel_slaves("mymaster"), "replica known")
        self._wait(
            lambda: self.replica.client().info("replication").get("master_link_status") == "up",
            "replica in sync",
        )
        return self

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)

    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/mymaster/0"

    def master_port(self) -> int:
        _host, port = self.sentinel_client().sentinel_get_master_addr_by_name("mymaster")
        return int(port)

    def failover(self) -> int:
        """Ask the sentinel to promote the replica; the new master's port once it serves."""
        old = self.master_port()
        self.sentinel_client().execute_command("SENTINEL", "FAILOVER", "mymaster")
        self._wait(lambda: self.master_port() != old, "failover", timeout_s=20)
        new = self.master_port()
        self._wait(
            lambda: redis.Redis(port=new).info("replication")["role"] == "master", "promotion"
        )
        return new

    def _wait(self, check: Any, what: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sentinel set-up: {what} did not happen")

    def stop(self) -> None:
        for proc in (self.sentinel, self.replica, self.master):
            if proc is not None:
                proc.stop()


class Cluster:
    """Three masters made into a cluster with `redis-cli --cluster create` (no replicas)."""

    def __init__(self, tmp: Path, *, full_coverage: bool = True) -> None:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "yes" if full_coverage else "no"]  # fmt: skip
        self.nodes = [
            RedisProcess(tmp, f"node{i}", args, port=free_cluster_port()) for i in range(3)
        ]

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is not installed"
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [n.client().cluster("info")["cluster_state"] for n in self.nodes]
            if all(state == "ok" for state in states):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port},127.0.0.1:{self.nodes[1].port}"

    def node_for(self, key: str) -> RedisProcess:
        """The node serving a key's slot now."""
        slot = int(self.nodes[0].client().cluster("keyslot", key))
        for node in self.nodes:
            for start, end in _owned(node):
                if start <= slot <= end:
                    return node
        raise LookupError(slot)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _owned(node: RedisProcess) -> list[tuple[int, int]]:
    myself = node.client().execute_command("CLUSTER", "MYID").decode()
    out = []
    for entry in node.client().execute_command("CLUSTER", "SLOTS"):
        start, end, master = entry[0], entry[1], entry[2]
        if master[2].decode() == myself:
            out.append((int(start), int(end)))
    return out
