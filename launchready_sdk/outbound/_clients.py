"""The client factories: an `httpx.AsyncClient` or `httpx.Client` whose every transport,
proxies from the environment included, goes through one policy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from launchready_sdk.outbound._policy import OutboundPolicy
from launchready_sdk.outbound._recorder import OutboundRecorder
from launchready_sdk.outbound._transports import ResilientSyncTransport, ResilientTransport

C = TypeVar("C", httpx.AsyncClient, httpx.Client)

_TRANSPORT_KWARGS = ("verify", "cert", "http1", "http2", "limits", "proxy", "trust_env")


def http_client(
    policy: OutboundPolicy | None = None,
    *,
    recorder: OutboundRecorder | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every request goes through `policy`.

    `transport` replaces the network transport under the policy (e.g. `testing.FaultTransport`);
    `verify`, `cert`, `http2`, `limits` and `proxy` configure the default one. Proxies from the
    environment are wrapped with the same policy.
    """
    policy, recorder = policy or OutboundPolicy(), recorder or OutboundRecorder()
    wrap = functools.partial(ResilientTransport, policy=policy, recorder=recorder)
    inner_kwargs, client_kwargs = _split(httpx_kwargs)
    inner = transport or httpx.AsyncHTTPTransport(**inner_kwargs)
    return _wrap_mounts(httpx.AsyncClient(transport=wrap(inner), **client_kwargs), wrap)


def http_client_sync(
    policy: OutboundPolicy | None = None,
    *,
    recorder: OutboundRecorder | None = None,
    transport: httpx.BaseTransport | None = None,
    **httpx_kwargs: Any,
) -> httpx.Client:
    """An `httpx.Client` whose every request goes through `policy` (see `http_client`)."""
    policy, recorder = policy or OutboundPolicy(), recorder or OutboundRecorder()
    wrap = functools.partial(ResilientSyncTransport, policy=policy, recorder=recorder)
    inner_kwargs, client_kwargs = _split(httpx_kwargs)
    inner = transport or httpx.HTTPTransport(**inner_kwargs)
    return _wrap_mounts(httpx.Client(transport=wrap(inner), **client_kwargs), wrap)


def _split(httpx_kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments for the default transport, and those for the client (which keeps
    `trust_env`)."""
    inner = {k: httpx_kwargs[k] for k in _TRANSPORT_KWARGS if k in httpx_kwargs}
    inner.pop("trust_env", None)
    client = {k: v for k, v in httpx_kwargs.items() if k not in _TRANSPORT_KWARGS[:-1]}
    return inner, client


def _wrap_mounts(client: C, wrap: Callable[[Any], Any]) -> C:
    """Put the policy around transports httpx mounted itself (proxies from the environment)."""
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        for pattern, mounted in list(mounts.items()):
            if mounted is not None and not isinstance(
                mounted, (ResilientTransport, ResilientSyncTransport)
            ):
                mounts[pattern] = wrap(mounted)
    return client
