"""Realm pub/sub routing (protocol.md §6.4).

A subscription is (session, realm, event, id pattern). A publish on (realm, event, id)
reaches every subscription whose pattern matches the id, once per subscription, with
the subscriber's own pattern as ``sid``: a session subscribed with ``*`` and with ``a``
gets two pushes for a publish on ``a``. Each push is filtered by the subscriber's R
right on the published id. Patterns are indexed per (realm, event), so a publish
never scans unrelated subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hivectl.core.patterns import PatternIndex, compile_pattern
from hivectl.core.wire import publication
from server.model.session import Session


class PubSubRouter:
    def __init__(self) -> None:
        self._index: dict[tuple[str, str], PatternIndex[Session]] = {}
        self.count = 0

    def subscribe(self, session: Session, realm: str, event: str, pattern: str) -> None:
        key = (realm, event, pattern)
        if key in session.pubsub:
            return
        session.pubsub[key] = None
        index = self._index.get((realm, event))
        if index is None:
            index = self._index[(realm, event)] = PatternIndex()
        index.add(compile_pattern(pattern), session)
        self.count += 1

    def unsubscribe(self, session: Session, realm: str, event: str, pattern: str) -> bool:
        key = (realm, event, pattern)
        if key not in session.pubsub:
            return False
        del session.pubsub[key]
        index = self._index[(realm, event)]
        index.remove(compile_pattern(pattern), session)
        if not index:
            del self._index[(realm, event)]
        self.count -= 1
        return True

    def drop_session(self, session: Session) -> None:
        for realm, event, pattern in list(session.pubsub):
            self.unsubscribe(session, realm, event, pattern)

    def drop_realm(self, realm: str, sessions: Iterable[Session]) -> None:
        for session in sessions:
            for key in [key for key in session.pubsub if key[0] == realm]:
                self.unsubscribe(session, *key)

    def publish(self, realm: str, event: str, object_id: str, payload: Any) -> int:
        """Push the event to every matching, permitted subscription; returns pushes made."""
        index = self._index.get((realm, event))
        if index is None:
            return 0
        pushes = 0
        for pattern, session in index.match(object_id):
            if session.permissions.allows("R", realm, object_id):
                session.push(publication(realm, pattern, event, object_id, payload))
                pushes += 1
        return pushes
