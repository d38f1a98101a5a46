"""Revoked tokens: which the server refuses from now on, and when it may forget them.

An operator revokes one token by its ``jti`` (a stolen phone), or every token of a
``sub`` issued before a time (a rider who left: tokens refreshed on the phone share the
``sub``, not the ``jti``). A revocation is a change like any other (`server.model.changes`): on
one node it is applied at once and stored in SQLite; in a cluster it travels the log, one
subject per revocation, and every node applies it. Applying it closes the live
connections whose token it covers (`server.protocol.hub`); authentication refuses such tokens
(``token has been revoked``) after the cache of verified tokens, so the cache cannot
let one through.

Forgetting. A revocation matters only while a token it covers could still be accepted,
so each carries the time after which none can (`expiry`), and is dropped then (by
`Revocations.forget`, by JetStream's per-message TTL in a cluster), so the list does not
grow without bound:

==========================  ===================================================
revocation                  forgotten at
==========================  ===================================================
``jti``, token ``exp`` known  that ``exp`` (a live connection's token, or given)
``jti``, ``exp`` unknown      now + ``auth.max_token_ttl``
``sub``, issued before T      T + ``auth.max_token_ttl``
==========================  ===================================================

With ``auth.max_token_ttl`` 0 (no bound on token lifetimes) the last two are kept for
ever: a token may live for ever, so its revocation must too. The bound is sound because
the server refuses tokens that would live longer (`hivectl.core.tokens.lives_within`).

A token without ``iat`` cannot show it was issued after T: a ``sub`` revocation covers it.
Everything here is pure; time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from hivectl.core.wire import iso8601


@dataclass(frozen=True, slots=True)
class Revocation:
    """Tokens refused from now on: the one with ``jti``, or those of ``sub`` issued before."""

    jti: str | None
    sub: str | None
    issued_before: float | None
    """For a ``sub`` revocation: tokens with an ``iat`` before this (or none) are covered."""
    expires: float | None
    """When every token it covers has expired anyway (None: never known)."""
    at: float

    @property
    def key(self) -> str:
        """One key per revocation target: a second revocation of it replaces the first."""
        return f"jti:{self.jti}" if self.jti is not None else f"sub:{self.sub}"

    def to_wire(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"jti": self.jti} if self.jti is not None else {"sub": self.sub}
        if self.issued_before is not None:
            entry["issuedBefore"] = iso8601(self.issued_before)
        entry["expires"] = None if self.expires is None else iso8601(self.expires)
        entry["at"] = iso8601(self.at)
        return entry


def revoke_jti(jti: str, exp: float | None, max_ttl: float, now: float) -> Revocation:
    """Revoke one token; `exp` is its expiry when known (else the lifetime bound decides)."""
    if exp is not None:
        expires: float | None = exp
    else:
        expires = now + max_ttl if max_ttl > 0 else None
    return Revocation(jti, None, None, expires, now)


def revoke_sub(sub: str, issued_before: float | None, max_ttl: float, now: float) -> Revocation:
    """Revoke every token of `sub` issued before `issued_before` (default: now)."""
    before = now if issued_before is None else issued_before
    return Revocation(None, sub, before, before + max_ttl if max_ttl > 0 else None, now)


def merged(old: Revocation, new: Revocation) -> Revocation:
    """Two revocations of one target: what either covers stays covered, for as long."""
    expires = None if old.expires is None or new.expires is None else max(old.expires, new.expires)
    before = old.issued_before
    if before is not None and new.issued_before is not None:
        before = max(before, new.issued_before)
    return replace(new, issued_before=before, expires=expires)


class Revocations:
    """The revocations in force, by target, checked on every authentication."""

    __slots__ = ("_by_jti", "_by_sub")

    def __init__(self) -> None:
        self._by_jti: dict[str, Revocation] = {}
        self._by_sub: dict[str, Revocation] = {}

    def __len__(self) -> int:
        return len(self._by_jti) + len(self._by_sub)

    def __iter__(self) -> Iterator[Revocation]:
        yield from self._by_jti.values()
        yield from self._by_sub.values()

    def add(self, revocation: Revocation) -> Revocation:
        """Put `revocation` in force (merged with one of the same target); the result."""
        table, name = self._table(revocation)
        old = table.get(name)
        current = revocation if old is None else merged(old, revocation)
        table[name] = current
        return current

    def revokes(self, sub: str | None, jti: str | None, iat: float | None) -> bool:
        """Whether a token with these claims is revoked."""
        if jti is not None and jti in self._by_jti:
            return True
        if sub is None:
            return False
        revocation = self._by_sub.get(sub)
        if revocation is None:
            return False
        before = revocation.issued_before
        return iat is None or before is None or iat < before

    def forget(self, now: float) -> list[Revocation]:
        """Drop the revocations whose tokens have all expired by `now`; those dropped."""
        gone = [r for r in self if r.expires is not None and r.expires <= now]
        for revocation in gone:
            table, name = self._table(revocation)
            del table[name]
        return gone

    def listed(self) -> list[Revocation]:
        """Every revocation in force, oldest first."""
        return sorted(self, key=lambda r: (r.at, r.key))

    def _table(self, revocation: Revocation) -> tuple[dict[str, Revocation], str]:
        if revocation.jti is not None:
            return self._by_jti, revocation.jti
        assert revocation.sub is not None
        return self._by_sub, revocation.sub
