"""List, export, import and delete a realm's objects through the client.

Each operation starts from the realm's ``lis`` (ids in creation order, protocol.md §6.2) and
selects ids with id patterns (§3) on this side: the protocol's ``lis`` filters compare
attributes, and ``$id`` only for equality. The requests then go through `send_all`, paced
under the server's limits, and each returns what became of every object instead of
stopping at the first failure, so the caller can report it all.

Import conflicts (an id that already exists) are settled before anything is written, from
that same ``lis``: ``skip`` leaves those objects alone, ``update`` reads them and makes
them equal to the file, ``fail`` writes nothing at all and names them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hivectl.client import HivekitClient, HivekitError
from hivectl.core.pacing import Budget
from hivectl.core.patterns import compile_pattern
from hivectl.core.wire import request
from hivectl.transfer.bulk import Progress, send_all
from hivectl.transfer.lines import create_message

Conflict = Literal["skip", "update", "fail"]
CONFLICT_POLICIES: tuple[Conflict, ...] = ("skip", "update", "fail")
NOT_FOUND = 404
SHOWN_IDS = 5
"""Ids named per failure reason in a report."""


@dataclass
class Outcome:
    """What became of each object an operation touched."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, HivekitError]] = field(default_factory=list)


def select(listing: Mapping[str, Any], patterns: Sequence[str]) -> list[str]:
    """Ids of the listing (in its order) that match any of the patterns."""
    compiled = [compile_pattern(pattern) for pattern in patterns]
    return [oid for oid in listing if any(pattern.matches(oid) for pattern in compiled)]


def failure_lines(failed: Sequence[tuple[str, HivekitError]]) -> list[str]:
    """One line per distinct reason, most frequent first: its count and the first ids."""
    by_reason: dict[str, list[str]] = {}
    for object_id, error in failed:
        text = error.text.replace(object_id, "<id>")
        reason = f"{error.code} {text}" if error.code else text
        by_reason.setdefault(reason, []).append(object_id)
    counts = Counter({reason: len(ids) for reason, ids in by_reason.items()})
    lines = []
    for reason, count in counts.most_common():
        ids = by_reason[reason]
        shown = ", ".join(ids[:SHOWN_IDS]) + (", ..." if len(ids) > SHOWN_IDS else "")
        lines.append(f"{reason}: {count} ({shown})")
    return lines


async def list_objects(
    client: HivekitClient, realm: str, patterns: Sequence[str], where: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """``lis`` entries (``id``, ``lab``, ``cst``) of the objects matching the patterns."""
    listing = await client.realm.handle(realm).object.list(filters=list(where) or None)
    return {object_id: listing[object_id] for object_id in select(listing, patterns)}


@dataclass
class Exported:
    objects: list[dict[str, Any]]
    """As the server returned them, in creation order."""
    vanished: list[str]
    """Listed, then deleted before they could be read."""
    failed: list[tuple[str, HivekitError]]


async def export_objects(
    client: HivekitClient,
    realm: str,
    patterns: Sequence[str],
    budget: Budget,
    on_progress: Progress | None = None,
) -> Exported:
    listed = await list_objects(client, realm, patterns)
    messages = [request("obj", "rea", rea=realm, id=oid) for oid in listed]
    results = await send_all(client.connection, messages, budget, on_progress=on_progress)
    exported = Exported([], [], [])
    for object_id, result in zip(listed, results, strict=True):
        if isinstance(result, HivekitError):
            if result.code == NOT_FOUND:
                exported.vanished.append(object_id)
            else:
                exported.failed.append((object_id, result))
        else:
            exported.objects.append(result)
    return exported


@dataclass
class Imported:
    realm_created: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    """With ``fail``: the ids that exist already (and nothing was written)."""
    failed: list[tuple[str, HivekitError]] = field(default_factory=list)


async def import_objects(
    client: HivekitClient,
    realm: str,
    objects: Sequence[Mapping[str, Any]],
    on_conflict: Conflict,
    budget: Budget,
    on_progress: Progress | None = None,
) -> Imported:
    """Create `objects` in `realm` (created first if missing), in order."""
    imported = Imported()
    try:
        await client.realm.get(realm)
    except HivekitError as exc:
        if exc.code != NOT_FOUND:
            raise
        await client.realm.create(realm)
        imported.realm_created = True
    existing = set(await client.realm.handle(realm).object.list())
    clashing = [obj["id"] for obj in objects if obj["id"] in existing]
    if clashing and on_conflict == "fail":
        imported.conflicts = clashing
        return imported
    current: dict[str, Any] = {}
    if on_conflict == "skip":
        imported.skipped = clashing
        objects = [obj for obj in objects if obj["id"] not in existing]
    elif clashing:
        reads = [request("obj", "rea", rea=realm, id=oid) for oid in clashing]
        for object_id, result in zip(
            clashing, await send_all(client.connection, reads, budget), strict=True
        ):
            if not isinstance(result, HivekitError):
                current[object_id] = result
    messages = [create_message(realm, obj, current.get(obj["id"])) for obj in objects]
    results = await send_all(client.connection, messages, budget, on_progress=on_progress)
    for obj, result in zip(objects, results, strict=True):
        object_id = obj["id"]
        if isinstance(result, HivekitError):
            imported.failed.append((object_id, result))
        elif object_id in existing:
            imported.updated.append(object_id)
        else:
            imported.created.append(object_id)
    return imported


async def delete_objects(
    client: HivekitClient,
    realm: str,
    object_ids: Sequence[str],
    budget: Budget,
    on_progress: Progress | None = None,
) -> Outcome:
    """Delete the objects; one already gone counts as deleted (what was asked holds)."""
    messages = [request("obj", "del", rea=realm, id=oid) for oid in object_ids]
    results = await send_all(client.connection, messages, budget, on_progress=on_progress)
    outcome = Outcome()
    for object_id, result in zip(object_ids, results, strict=True):
        if isinstance(result, HivekitError) and result.code != NOT_FOUND:
            outcome.failed.append((object_id, result))
        else:
            outcome.done.append(object_id)
    return outcome
