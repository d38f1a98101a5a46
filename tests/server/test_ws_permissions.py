"""Permissions over real sockets (protocol.md §7).

Every action allowed and denied per letter, and what a denial leaves, is tested on the hub,
without sockets (`tests.protocol.test_permissions`). One exchange stays here so that the
socket path of permissions stays covered (the HTTP upgrade, the Bearer frame that carries
the grants, text frames in and out through the shell): an allowed read, a denied request
and a denied ``set`` (its error goes without ``cid``) through a real server, whose
connection keeps working afterwards.
"""

from __future__ import annotations

from server.io.app import HivekitServer
from tests.conftest import mint
from tests.server.wsutil import RawClient


async def test_allowed_and_denied_actions_end_to_end(server: HivekitServer) -> None:
    admin = await RawClient.open(server.ws_url, mint("admin"))
    await admin.ok({"typ": "rea", "act": "cre", "id": "r1"})
    for object_id in ("a/1", "b/1"):
        await admin.ok({"typ": "obj", "act": "cre", "rea": "r1", "id": object_id, "dat": {"v": 0}})

    client = await RawClient.open(server.ws_url, mint("u", per={"r1": {"a/*": "R"}}))
    read = {"typ": "obj", "act": "rea", "rea": "r1"}
    assert (await client.ok({**read, "id": "a/1"}))["dat"] == {"v": 0}
    denied = await client.request({**read, "id": "b/1"})
    assert (denied["res"], denied["erc"], denied["err"]) == (
        "err",
        403,
        "permission denied: R on r1/b/1",
    )
    start = len(client.received)
    await client.send([{"typ": "obj", "act": "set", "rea": "r1", "id": "a/1", "dat": {"v": 1}}])
    end = await client.marker()
    [refused] = client.received[start:end]
    assert refused == {
        "typ": "obj",
        "act": "set",
        "res": "err",
        "err": "permission denied: U on r1/a/1",
        "erc": 403,
    }
    assert (await admin.ok({**read, "id": "a/1"}))["dat"] == {"v": 0}  # nothing changed
    await client.ok({"typ": "sys", "act": "hbt"})  # the connection keeps working
    await client.close()
    await admin.close()
