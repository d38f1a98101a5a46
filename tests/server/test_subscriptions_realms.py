"""Realm-list and realm-data subscriptions end to end (protocol.md §6.3)."""

from __future__ import annotations

from hivectl.client import Realm
from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.test_subscriptions import clients, until


async def test_realm_list_gets_one_push_per_realm_operation(
    server: HivekitServer, token: Mint
) -> None:
    async with clients(server, token(), token(), token(per={"mine*": {"*": "R"}})) as (
        admin,
        watcher,
        limited,
    ):
        everything: list[tuple[str, str]] = []
        visible: list[tuple[str, str]] = []
        await watcher.realm.subscribe(
            lambda realm_id, action: everything.append((realm_id, action))
        )
        await limited.realm.subscribe(lambda realm_id, action: visible.append((realm_id, action)))
        await admin.realm.create("x")
        await admin.realm.update("x", lab="X")
        await admin.realm.update("x", dat={"k": 1})
        await admin.realm.delete("x")
        await admin.realm.create("mine-1")  # the marker
        await until(lambda: len(everything) >= 5 and len(visible) >= 1)
        assert everything == [
            ("x", "created"),
            ("x", "updated"),
            ("x", "updated"),
            ("x", "deleted"),
            ("mine-1", "created"),
        ]
        assert visible == [("mine-1", "created")]


async def test_realm_data_gets_one_ful_per_update(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token(), token()) as (admin, watcher):
        realm = await admin.realm.create("r", lab="R")
        seen: list[tuple[str, dict[str, object]]] = []

        def on_change(updated: Realm) -> None:
            seen.append((updated.lab, dict(updated.dat)))

        watched = watcher.realm.handle("r")
        await watched.subscribe(on_change)
        await admin.realm.update("r", dat={"a": 1})
        await realm.object.create("o")  # object changes are not realm updates
        await admin.realm.update("r", lab="Renamed", dat={"a": None, "b": 2})  # the marker
        await until(lambda: len(seen) >= 2)
        assert seen == [("R", {"a": 1}), ("Renamed", {"b": 2})]
        assert (watched.lab, watched.dat) == ("Renamed", {"b": 2})
