"""In a cluster too, writes sent with the close frame are applied: the node proposes them to
the log and they reach every node, although their client is gone before the replies."""

from __future__ import annotations

from tests.cluster.conftest import Cluster
from tests.conftest import mint
from tests.server.test_last_frames import send_then_close_in_one_write, writes
from tests.server.wsutil import eventually


async def test_writes_sent_with_the_close_frame_reach_every_node(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    reader = await cluster.client(b)
    await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "kept"})
    for n in range(10):
        await send_then_close_in_one_write(a.ws_url, mint("rider"), writes(n))

        async def applied(n: int = n) -> bool:
            bodies = [
                await reader.request({"typ": "obj", "act": "rea", "rea": "r", "id": oid})
                for oid in (f"created/{n}", f"set/{n}", "kept")
            ]
            return all(body.get("dat", {}).get("dat") == {"n": n} for body in bodies)

        await eventually(applied, timeout=10)
