"""Loopback servers for the audit tests: a zone-serving DNS server (dnslib), a resolver that
never answers, HTTP and HTTPS servers with scripted behaviour, and a TLS server that hangs in
the handshake. Everything binds 127.0.0.1 on a free port and stops when the test ends.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dnslib import AAAA, CNAME, MX, QTYPE, RR, SOA, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

Zone = dict[str, list[tuple[str, str]]]  # name -> [(type, value)]


def _txt(value: str) -> TXT:
    chunks = [value[i : i + 255].encode() for i in range(0, len(value), 255)] or [b""]
    return TXT(chunks)


def _rdata(kind: str, value: str) -> Any:
    if kind == "A":
        return A(value)
    if kind == "AAAA":
        return AAAA(value)
    if kind == "CNAME":
        return CNAME(value)
    if kind == "MX":
        return MX(value)
    if kind == "TXT":
        return _txt(value)
    raise ValueError(kind)


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from a dict of names; names under a served apex that are absent are NXDOMAIN.

    A CNAME is followed inside the zone, as a recursive resolver would. `queries` counts the
    questions asked, per (name, type).
    """

    def __init__(self, zone: Zone) -> None:
        self.zone = {k.rstrip(".").lower(): v for k, v in zone.items()}
        self.queries: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries[(qname, qtype)] = self.queries.get((qname, qtype), 0) + 1
        name, hops = qname, 0
        while hops < 8:
            records = self.zone.get(name)
            if records is None:
                if name == qname:
                    reply.header.rcode = 3  # NXDOMAIN
                    reply.add_auth(RR(qname, QTYPE.SOA, rdata=SOA("ns.test", "admin.test")))
                return reply
            cname = [v for k, v in records if k == "CNAME"]
            if cname and qtype != "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cname[0]), ttl=60))
                name, hops = cname[0].rstrip(".").lower(), hops + 1
                continue
            for kind, value in records:
                if kind == qtype:
                    reply.add_answer(
                        RR(name, getattr(QTYPE, kind), rdata=_rdata(kind, value), ttl=60)
                    )
            return reply
        return reply


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data")

    def log_prefix(self, handler: Any) -> str:
        return ""


@contextlib.contextmanager
def dns_server(zone: Zone) -> Iterator[tuple[str, ZoneResolver]]:
    """A DNS server for `zone` on 127.0.0.1 (UDP and TCP): yields ("127.0.0.1:PORT", resolver)."""
    resolver = ZoneResolver(zone)
    logger = _QuietLogger()
    for _ in range(50):  # a free UDP port may be taken for TCP: try another
        udp = DNSServer(resolver, address="127.0.0.1", port=0, logger=logger)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=logger)
        except OSError:
            udp.server.server_close()
            continue
        break
    else:
        raise RuntimeError("no port free for both UDP and TCP")
    udp.start_thread()
    tcp.start_thread()
    try:
        yield f"127.0.0.1:{port}", resolver
    finally:
        udp.stop()
        tcp.stop()
        udp.server.server_close()
        tcp.server.server_close()


@contextlib.contextmanager
def silent_dns() -> Iterator[str]:
    """A UDP and TCP port on 127.0.0.1 that take DNS questions and never answer."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", port))
    tcp.listen(8)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        udp.close()
        tcp.close()


Handler = Callable[[http.server.BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def http_server(handler: Handler, context: ssl.SSLContext | None = None) -> Iterator[int]:
    """An HTTP (or, with `context`, HTTPS) server on 127.0.0.1 whose every request is answered
    by `handler(request) -> (status, headers, body)`; yields its port."""

    class Handle(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = handler(self)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = do_OPTIONS = _answer

    server = _Server(("127.0.0.1", 0), Handle)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def hanging_tls_server() -> Iterator[int]:
    """Accepts TCP connections, reads the ClientHello and never answers it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
