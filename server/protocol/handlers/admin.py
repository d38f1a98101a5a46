"""Operator requests (``typ:"adm"``): connections, disconnects, token revocations and
the cluster's status.

Our extension of the protocol, served over the WebSocket and ``POST /api/v1`` alike
(README, "Operating"). Every action needs a token with the admin grant (``adm: true``,
`hivectl.core.tokens`); any other token gets 403 before the request is even read
(`server.protocol.checks.ADMIN`), so a non-admin learns nothing about other connections.

==========  ===================================  ==========================================
act         ``dat``                              reply ``dat``
==========  ===================================  ==========================================
``con``     optional ``realm``, ``sub`` (an id   ``{"connections": [...], "unanswered":
            pattern), ``node``                   [nodes]}``, sorted (`connection_order`)
``dis``     one of ``conn``, ``sub``, ``jti``;   ``{"disconnected": [{"id","node","sub"}],
            optional ``reason``                  "unanswered": [nodes]}``
``rev``     ``jti`` (optional ``exp``, seconds)  ``{"revocation": {...}}``
            or ``sub`` (optional
            ``issuedBefore``, seconds or
            ISO-8601)
``rvl``     none                                 ``{"revocations": [...]}``, oldest first
``cst``     none                                 ``{"mode", "node", "nodes": [...],
                                                 "unanswered": [nodes], "stream",
                                                 "natsServers"}`` (`server.cluster.status`)
==========  ===================================  ==========================================

In a cluster, ``con``, ``dis`` and ``cst`` are served for the whole cluster from any
node: this node does its own part, then asks the others (`server.protocol.hub.Peers`, core NATS)
and waits a bounded time; nodes whose lease it saw that did not answer are listed in
``unanswered``. On one node, ``cst`` answers ``mode: "embedded"`` with that node alone and
no stream, so a script can tell "not a cluster" from an error.

A kicked provider's departure travels the log like any other, so its objects go
``disconnected`` with reason ``kicked`` on every node. A revocation travels the log
itself (`server.model.revocations`), and every node closes its own connections that
use the revoked tokens.

`answer_peer` is what a node does for another's request: the same local parts, without
the admin check (NATS is inside the cluster's trust boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from hivectl.core.patterns import compile_pattern
from hivectl.core.wire import (
    Message,
    Request,
    WireError,
    check_id,
    is_number,
    iso8601,
    require_object,
    success,
)
from server.model.revocations import revoke_jti, revoke_sub
from server.model.session import Session
from server.protocol.checks import Target
from server.protocol.context import AdminContext
from server.protocol.deferred import Deferred, blank_row

MAX_REASON = 100
"""Longest disconnect reason kept: the close frame's reason has at most 123 bytes."""


def list_connections(
    hub: AdminContext, session: Session, request: Request, target: Target, now: float
) -> Message | Deferred:
    options = _options(request, ("realm", "sub", "node"))
    local = local_connections(hub, options)
    if hub.peers is None:
        return success(request, {"connections": local, "unanswered": []})
    return _gather(hub, request, options, "connections", local)


def disconnect(
    hub: AdminContext, session: Session, request: Request, target: Target, now: float
) -> Message | Deferred:
    options = _options(request, ("conn", "sub", "jti", "reason"))
    targets = [key for key in ("conn", "sub", "jti") if key in options]
    if len(targets) != 1:
        raise WireError(400, "dat needs exactly one of conn, sub, jti")
    local = kick_local(hub, options, now)
    if hub.peers is None:
        return success(request, {"disconnected": local, "unanswered": []})
    return _gather(hub, request, options, "disconnected", local)


def revoke(
    hub: AdminContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    options = require_object(request.dat, "dat") if request.dat is not None else {}
    unknown = sorted(set(options) - {"jti", "exp", "sub", "issuedBefore"})
    if unknown:
        raise WireError(400, f"dat.{unknown[0]} is not an option of this action")
    max_ttl = hub.settings.auth.max_token_ttl
    jti, sub = options.get("jti"), options.get("sub")
    if (jti is None) == (sub is None):
        raise WireError(400, "dat needs exactly one of jti, sub")
    if jti is not None:
        jti = _text(jti, "dat.jti")
        exp = options.get("exp")
        if exp is not None and not is_number(exp):
            raise WireError(400, "dat.exp must be a number (seconds since the epoch)")
        revocation = revoke_jti(jti, _known_exp(hub, jti, exp), max_ttl, now)
    else:
        before = options.get("issuedBefore")
        revocation = revoke_sub(
            _text(sub, "dat.sub"),
            None if before is None else _time(before, "dat.issuedBefore"),
            max_ttl,
            now,
        )
    hub.commit(revocation)
    hub.forget_revocations(now)
    return success(request, {"revocation": revocation.to_wire()})


def list_revocations(
    hub: AdminContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    hub.forget_revocations(now)
    return success(
        request, {"revocations": [entry.to_wire() for entry in hub.revocations.listed()]}
    )


def cluster_status(
    hub: AdminContext, session: Session, request: Request, target: Target, now: float
) -> Message | Deferred:
    _options(request, ())
    cluster = hub.cluster
    if cluster is None:
        return success(request, embedded_status(hub.node_id))

    async def reply() -> Message:
        return success(request, await cluster.report(request.act))

    return Deferred(reply)


def embedded_status(node: str) -> dict[str, Any]:
    """``cst`` on a node that is no cluster: itself, taking writes, and no stream."""
    row = {**blank_row(node), "incarnation": None, "writable": True}
    return {
        "mode": "embedded",
        "node": node,
        "nodes": [row],
        "unanswered": [],
        "stream": None,
        "natsServers": [],
    }


def answer_peer(hub: AdminContext, request: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Another node's ``con``, ``dis`` or ``cst``: this node's part (`server.cluster.peers`)."""
    options = request.get("dat")
    if not isinstance(options, dict):
        raise ValueError("dat must be an object")
    if request.get("act") == "con":
        return {"connections": local_connections(hub, options)}
    if request.get("act") == "dis":
        return {"disconnected": kick_local(hub, options, now)}
    if request.get("act") == "cst" and hub.cluster is not None:
        return {"status": hub.cluster.node()}
    raise ValueError(f"unknown action {request.get('act')!r}")


def local_connections(hub: AdminContext, options: Mapping[str, str]) -> list[dict[str, Any]]:
    """This node's connections that match the filters, as listed to the operator."""
    matches = _filter(hub.node_id, options)
    return sorted(
        (describe(s, hub.node_id, hub.queued(s)) for s in hub.sessions.values() if matches(s)),
        key=connection_order,
    )


def kick_local(hub: AdminContext, options: Mapping[str, str], now: float) -> list[dict[str, Any]]:
    """Close this node's connections that `options` names (``conn``, ``sub`` or ``jti``)."""
    reason = options.get("reason", "")[:MAX_REASON]
    text = f"kicked: {reason}" if reason else "kicked"
    kicked = []
    for session in list(hub.sessions.values()):
        if _named(session, options) and session.closing is None:
            hub.kick(session, "kicked", text, now)
            kicked.append({"id": session.conn_id, "node": hub.node_id, "sub": session.sub})
    return kicked


def describe(session: Session, node: str, queued: int) -> dict[str, Any]:
    claims = session.claims
    return {
        "id": session.conn_id,
        "node": node,
        "remote": session.remote,
        "sub": None if claims is None else claims.sub,
        "jti": None if claims is None else claims.jti,
        "dpv": None if claims is None else claims.raw.get("dpv"),
        "since": iso8601(session.opened_at),
        "messagesIn": session.messages_in,
        "messagesOut": session.messages_out,
        "queued": queued,
    }


def connection_order(entry: Mapping[str, Any]) -> tuple[bool, str, str, str, str]:
    """By ``sub`` (connections without one last), then node, then age, then id."""
    sub = entry["sub"]
    return (sub is None, sub or "", entry["node"], entry["since"], entry["id"])


def _options(request: Request, keys: tuple[str, ...]) -> dict[str, str]:
    """``dat`` with only `keys`, each a non-empty string (400 otherwise)."""
    options = require_object(request.dat, "dat") if request.dat is not None else {}
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise WireError(400, f"dat.{unknown[0]} is not an option of this action")
    return {key: _text(value, f"dat.{key}") for key, value in options.items()}


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise WireError(400, f"{what} must be a string")
    check_id(value, what)
    return value


def _time(value: object, what: str) -> float:
    """Seconds since the epoch, or an ISO-8601 time with a zone."""
    if is_number(value):
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed.timestamp()
    raise WireError(400, f"{what} must be seconds since the epoch or an ISO-8601 time with a zone")


def _known_exp(hub: AdminContext, jti: str, given: float | None) -> float | None:
    """The revoked token's expiry: given, or from this node's connections using it."""
    if given is not None:
        return float(given)
    expiries = [
        s.claims.exp for s in hub.sessions.values() if s.claims is not None and s.claims.jti == jti
    ]
    if not expiries or None in expiries:
        return None
    return max(e for e in expiries if e is not None)


def _filter(node: str, options: Mapping[str, str]) -> Callable[[Session], bool]:
    realm = options.get("realm")
    sub = compile_pattern(options["sub"]) if "sub" in options else None
    wanted_node = options.get("node")
    if wanted_node is not None and wanted_node not in (node, node.split("#", 1)[0]):
        return lambda session: False

    def matches(session: Session) -> bool:
        if sub is not None and (session.sub is None or not sub.matches(session.sub)):
            return False
        return realm is None or _in_realm(session, realm)

    return matches


def _in_realm(session: Session, realm: str) -> bool:
    """Whether the connection may act in `realm` (``per``) or provides for it (``dpv``)."""
    if not session.authenticated:
        return False
    if session.permissions.has_any(realm):
        return True
    return any(compile_pattern(pattern).matches(realm) for pattern, _ in session.providers.entries)


def _named(session: Session, options: Mapping[str, str]) -> bool:
    if "conn" in options:
        return session.conn_id == options["conn"]
    claims = session.claims
    if claims is None:
        return False
    if "sub" in options:
        return claims.sub == options["sub"]
    return "jti" in options and claims.jti == options["jti"]


def _gather(
    hub: AdminContext,
    request: Request,
    options: Mapping[str, str],
    key: str,
    local: list[dict[str, Any]],
) -> Deferred:
    """The reply once the other nodes answered with their part (or the wait is over)."""
    peers = hub.peers
    assert peers is not None

    async def reply() -> Message:
        gathered = await peers.ask({"act": request.act, "dat": dict(options)})
        entries = list(local)
        for answer in gathered.answers:
            part = answer.get(key)
            if isinstance(part, list):
                entries.extend(entry for entry in part if isinstance(entry, dict))
        if key == "connections":
            entries.sort(key=connection_order)
        return success(request, {key: entries, "unanswered": gathered.unanswered})

    return Deferred(reply)
