"""Subject names of the cluster log, and the encoding that keeps them collision-free.

One JetStream stream holds every event, one subject per entity, so that the last
message of a subject is that entity's current state (the stream keeps one message
per subject: it is both the ordered log and its compaction):

=================================== ==========================================
subject                             last message = current state of
=================================== ==========================================
``hive.log.<realm>.realm``          the realm (record, or a deletion marker)
``hive.log.<realm>.obj.<object>``   the object (record, or a deletion marker)
``hive.prov.<node>.<conn>``         a provider (up with its dpv, or down)
``hive.lease.<node>``               a node's lease (renewal, or its loss)
``hive.tick``                       the latest grace-period tick
``hive.revoke.<target>``            a token revocation (``jti:...``/``sub:...``),
                                    stored with a TTL: it expires when every
                                    token it covers has (`server.model.revocations`)
=================================== ==========================================

Realm ids, object ids, node and connection ids may hold any character, ``.``, ``*``
and ``>`` included, which NATS subjects cannot carry. Each is encoded as one token of
base64url without padding: the alphabet has no ``.``, so distinct ``(realm, id)``
pairs always give distinct subjects. The realm comes first in every object subject,
so realms can later be sharded across streams by subject filter
(``hive.log.<realm>.>``).

Pub/sub messages are not state and do not enter the stream: they travel on core NATS
subjects ``hive.pub.<realm>``. So do operators' requests to every node (list the
connections, disconnect some): request/reply on ``hive.ctl.<stream>.admin``.
"""

from __future__ import annotations

import base64

STREAM_SUBJECTS = ("hive.log.>", "hive.prov.>", "hive.lease.>", "hive.tick", "hive.revoke.>")
TICK = "hive.tick"


def token(value: str) -> str:
    """One subject token for any string (empty strings encode as ``_``)."""
    if not value:
        return "_"
    return base64.urlsafe_b64encode(value.encode("utf-8")).rstrip(b"=").decode("ascii")


def untoken(encoded: str) -> str:
    if encoded == "_":
        return ""
    padding = "=" * (-len(encoded) % 4)
    return base64.urlsafe_b64decode(encoded + padding).decode("utf-8")


def realm_subject(realm_id: str) -> str:
    return f"hive.log.{token(realm_id)}.realm"


def object_subject(realm_id: str, object_id: str) -> str:
    return f"hive.log.{token(realm_id)}.obj.{token(object_id)}"


def provider_subject(node: str, conn: str) -> str:
    return f"hive.prov.{token(node)}.{token(conn)}"


def realm_objects_filter(realm_id: str) -> str:
    """Every object subject of a realm (to purge a deleted realm's objects)."""
    return f"hive.log.{token(realm_id)}.obj.>"


def node_providers_filter(node: str) -> str:
    """Every provider subject of a node (to purge a lost node's providers)."""
    return f"hive.prov.{token(node)}.>"


def lease_subject(node: str) -> str:
    return f"hive.lease.{token(node)}"


def pubsub_subject(realm_id: str) -> str:
    return f"hive.pub.{token(realm_id)}"


def revocation_subject(key: str) -> str:
    """One subject per revoked target, so the stream keeps its latest revocation."""
    return f"hive.revoke.{token(key)}"


def admin_subject(stream: str) -> str:
    """Core NATS subject every node of the cluster following `stream` answers operators on."""
    return f"hive.ctl.{stream}.admin"
