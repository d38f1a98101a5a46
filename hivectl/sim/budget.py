"""What a run may take: file descriptors from this machine, messages per second from the server.

Descriptors
===========

Every connection is a socket, so a plan's peak need is its rider connections (devices and
gateways, all of which may be online at once) plus the admin connection that doubles as the
watcher, plus `SPARE_DESCRIPTORS` for the interpreter, the event loop and the setup
connections (which are closed before the riders connect and opened again only after they
are gone). A plan that needs more than the hard ``RLIMIT_NOFILE`` cannot run here: it is
refused before anything connects, with what to change, instead of failing on the
thousandth connect with ``Too many open files``.

Message rate
============

The server limits each connection to ``limits.messages_per_second`` messages per second
(1,000 by default; more than ``burst`` rejections within a second and it closes the
connection with 4029), raised by ``limits.messages_per_object`` (2 by default, on servers
that have it) for every object the connection provides. The simulator stays under that
with margin: each connection is paced to `SAFE_MESSAGES_PER_S` plus
`SAFE_MESSAGES_PER_OBJECT` per object it provides that exists. `hivectl.core.pacing.Pacer`
books each frame against that rate, so a connection's average rate never exceeds it and a
frame never waits longer than it must.

Frames
======

A frame holds at most `MAX_FRAME_MESSAGES` messages (the server's
``max_messages_per_frame`` is 1,000 by default: over it the whole frame is refused) and at
most `MAX_FRAME_BYTES` (its ``max_message_size`` is 64 KiB: over it the connection is
closed with 1009). 500 object creations are about 100 KB, so the byte bound is the one
that usually decides; `hivectl.core.pacing.split_frames` packs messages greedily under both.

All pure: counts, limits and times are passed in.
"""

from __future__ import annotations

import math

SPARE_DESCRIPTORS = 64
SAFE_MESSAGES_PER_S = 800.0
SAFE_MESSAGES_PER_OBJECT = 1.5
MAX_FRAME_MESSAGES = 500
MAX_FRAME_BYTES = 48 * 1024
OBJECTS_PER_SETUP_LINK = 1_000
MAX_SETUP_LINKS = 16
"""Objects are created (and deleted) over several connections, each paced on its own: one
per `OBJECTS_PER_SETUP_LINK` objects, at most `MAX_SETUP_LINKS`, so 5,000 objects take
about 5,000 / (5 x 800) = 1.3 s and 100,000 about 100,000 / (16 x 800) = 8 s (if the
server keeps up) instead of two minutes on one connection."""


def descriptors_needed(connections: int) -> int:
    """File descriptors for a plan with this many rider connections (device + gateway)."""
    return connections + 1 + SPARE_DESCRIPTORS


def open_file_problem(
    needed: int, soft: int, hard: int | None, *, connections: int, gateways: int
) -> str | None:
    """Why the plan cannot get its descriptors (None when it can: the soft limit is then
    raised to what is needed). `hard` None means unlimited."""
    if hard is None or hard >= needed:
        return None
    text = (
        f"this run needs {needed} open files ({connections} rider connections, "
        f"{needed - connections} spare) but the limit is {hard} (soft {soft}): raise it "
        f"(ulimit -n {needed} in the shell that runs it, LimitNOFILE={needed} for a systemd "
        f"service, --ulimit nofile={needed} for docker)"
    )
    if gateways == 0:
        text += ", or spread the riders over a few gateway connections (--gateways 10)"
    return text


def setup_links(objects: int) -> int:
    """How many connections create (or delete) `objects` objects."""
    return max(1, min(MAX_SETUP_LINKS, math.ceil(objects / OBJECTS_PER_SETUP_LINK)))


def allowed_rate(
    provided: int,
    *,
    per_connection: float = SAFE_MESSAGES_PER_S,
    per_object: float = SAFE_MESSAGES_PER_OBJECT,
) -> float:
    """Messages per second for a connection that provides `provided` existing objects."""
    return per_connection + per_object * provided
