"""Hostile input (protocol.md §1, §5): every frame gets well-formed answers, nothing escapes
as an exception, nothing is stored half-way, and the connection stays usable.

Also realm isolation: realms whose ids share a prefix, or whose (realm, id) pairs would
collide if joined into one string, never see each other's objects or events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from hivectl.core.wire import ACTIONS as WIRE_ACTIONS
from hivectl.core.wire import MAX_DEPTH, MAX_ID_LENGTH
from server.io.app import HivekitServer
from server.model.session import Session
from tests.conftest import Mint, make_settings, mint
from tests.server.inprocess import bare_hub, rss, run_due, take_sent
from tests.server.wsutil import RawClient, is_status, post, subscribe_msg

Message = dict[str, Any]


@pytest.fixture
async def client(server: HivekitServer, token: Mint) -> Any:
    raw = await RawClient.open(server.ws_url, token())
    await raw.ok({"typ": "rea", "act": "cre", "id": "r"})
    yield raw
    await raw.close()


async def frame_error(client: RawClient, frame: str | bytes) -> Message:
    """Send a frame that fails as a whole; its one error, once the connection answers again."""
    start = len(client.received)
    await client.send(frame)
    marker = await client.marker()
    (answer,) = client.received[start:marker]
    return answer


def hbt(cid: Any) -> Message:
    return {"typ": "sys", "act": "hbt", "cid": cid}


# -- JSON the decoder refuses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '[{"typ":"sys","act":"hbt","cid":"a","dat":NaN}]',
        '[{"typ":"sys","act":"hbt","cid":"a","dat":Infinity}]',
        '[{"typ":"sys","act":"hbt","cid":"a","dat":-Infinity}]',
        '[{"typ":"sys","act":"hbt","cid":"a","dat":1e999}]',
        '[{"typ":"sys","act":"hbt","cid":"\\ud800"}]',
        '[{"typ":"sys","act":"hbt","cid":"a","dat":' + "[" * 5000 + "]" * 5000 + "}]",
        '[{"typ":"sys","act":"hbt","cid":"a"}',
        "",
    ],
    ids=["nan", "infinity", "-infinity", "overflow", "lone surrogate", "5000 deep", "cut", "empty"],
)
async def test_json_the_decoder_refuses_is_one_400(client: RawClient, frame: str) -> None:
    answer = await frame_error(client, frame)
    assert answer["erc"] == 400
    assert answer["err"].startswith("frame is not valid JSON: ")
    assert "cid" not in answer


async def test_nesting_deeper_than_the_limit_is_refused_before_anything_is_stored(
    client: RawClient,
) -> None:
    def create(object_id: str, depth: int) -> str:
        dat = "[" * depth + "]" * depth
        head = orjson.dumps({"typ": "obj", "act": "cre", "rea": "r", "id": object_id, "cid": "c"})
        return f'[{head.decode()[:-1]},"dat":{{"k":{dat}}}}}]'

    # frame (1) > message (2) > dat (3) > its value: MAX_DEPTH - 3 levels of lists fit.
    await client.send(create("fits", MAX_DEPTH - 3))
    assert (await client.reply("c"))["res"] == "suc"
    stored = await client.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "fits"})
    assert orjson.dumps(stored["dat"]).count(b"[") == MAX_DEPTH - 3

    for depth in (MAX_DEPTH - 2, 300):  # 300: past what orjson can encode, were it kept
        answer = await frame_error(client, create("deep", depth))
        assert answer == {"res": "err", "err": "frame is nested deeper than 32 levels", "erc": 400}
    missing = await client.request({"typ": "obj", "act": "rea", "rea": "r", "id": "deep"})
    assert missing["erc"] == 404


async def test_the_http_api_refuses_deep_bodies_too(server: HivekitServer, token: Mint) -> None:
    assert server.api_url is not None
    body = ("[" * 300 + "]" * 300).encode()
    status, answer = await post(server.api_url, body, token())
    assert (status, answer) == (
        400,
        [{"res": "err", "err": "body is nested deeper than 32 levels", "erc": 400}],
    )


async def test_frames_that_are_not_arrays_of_objects(client: RawClient) -> None:
    assert (await frame_error(client, b"[]"))["err"] == "binary frames are not supported"
    for frame in ('{"typ":"sys"}', "1", '"x"', "null"):
        answer = await frame_error(client, frame)
        assert answer == {"res": "err", "err": "frame must be a JSON array of messages", "erc": 400}

    start = len(client.received)
    await client.send('[1, "x", null, [], true, {"typ":"sys","act":"hbt","cid":"ok"}]')
    marker = await client.marker()
    answers = client.received[start:marker]
    assert answers[:5] == [{"res": "err", "err": "message must be a JSON object", "erc": 400}] * 5
    assert answers[5]["cid"] == "ok" and answers[5]["res"] == "suc"


# -- numbers -------------------------------------------------------------------------------------


async def test_numbers_beyond_64_bits_are_doubles_and_such_a_cid_is_a_400(
    client: RawClient,
) -> None:
    answer = await frame_error(
        client, '[{"typ":"sys","act":"hbt","cid":123456789012345678901234567890}]'
    )
    assert (answer["erc"], answer["err"]) == (400, "cid must be a string or an integer")
    assert "cid" not in answer
    biggest = 2**64 - 1  # still an integer: echoed exactly
    await client.send(f'[{{"typ":"sys","act":"hbt","cid":{biggest}}}]')
    assert (await client.reply(biggest))["res"] == "suc"

    huge = "1" + "0" * 30
    await client.send(
        f'[{{"typ":"obj","act":"cre","rea":"r","id":"n","cid":"c","dat":{{"n":{huge}}}}}]'
    )
    assert (await client.reply("c"))["res"] == "suc"
    stored = await client.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "n"})
    assert stored["dat"] == {"n": 1e30}  # what JavaScript clients make of it too


# -- sizes ---------------------------------------------------------------------------------------


async def test_huge_arrays_within_the_size_limit_are_handled(client: RawClient) -> None:
    tds = [f"t{n}" for n in range(5000)]
    await client.ok(
        {
            "typ": "obj",
            "act": "cre",
            "rea": "r",
            "id": "many",
            "tds": tds,
            "dat": {"l": list(range(5000))},
        }
    )
    stored = await client.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "many"})
    assert stored["tds"] == tds

    answer = await frame_error(client, orjson.dumps([0] * 20000).decode())
    assert answer == {
        "res": "err",
        "err": "too many messages in one frame (limit 1000)",
        "erc": 413,
    }

    points = [{"x": n % 90, "y": (n * 7) % 80} for n in range(1500)]
    too_many = await client.request(
        {"typ": "obj", "act": "lis", "rea": "r", "dat": {"sha": {"points": points}}}
    )
    assert too_many["erc"] == 400


async def test_ids_and_patterns_longer_than_the_limit_are_400(client: RawClient) -> None:
    longest = "i" * MAX_ID_LENGTH
    await client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": longest})
    too_long = await client.request({"typ": "obj", "act": "cre", "rea": "r", "id": longest + "i"})
    assert (too_long["erc"], too_long["err"]) == (
        400,
        f"id is longer than {MAX_ID_LENGTH} characters",
    )
    too_long = await client.request({"typ": "obj", "act": "rea", "rea": "r" * 1025, "id": "x"})
    assert too_long["erc"] == 400
    pattern = subscribe_msg("r", "e", "*" * (MAX_ID_LENGTH + 1))
    assert (await client.request(pattern))[
        "err"
    ] == f"dat.idp is longer than {MAX_ID_LENGTH} characters"


async def test_a_pattern_of_many_stars_matches_long_ids_quickly(client: RawClient) -> None:
    stars = "*a" * 500  # 1000 characters, 500 stars
    await client.ok(subscribe_msg("r", "e", stars))
    near_miss = "a" * 499 + "b" * 500  # one `a` short: every star has room to try
    match = "ba" * 500
    for object_id in (near_miss, match):
        await client.ok(
            {"typ": "rea", "act": "pub", "id": "r", "dat": {"eve": "e", "idp": object_id}}
        )
    await client.marker()
    assert [m["dat"]["idp"] for m in client.pushes("e")] == [match]


# -- realm and id isolation ----------------------------------------------------------------------


async def test_realms_sharing_a_prefix_never_see_each_other(
    server: HivekitServer, token: Mint
) -> None:
    admin = await RawClient.open(server.ws_url, token("admin"))
    for realm in ("fleet", "fleet-eu"):
        await admin.ok({"typ": "rea", "act": "cre", "id": realm})
        await admin.ok({"typ": "obj", "act": "cre", "rea": realm, "id": "v/1", "dat": {"r": realm}})
    fleet = await RawClient.open(server.ws_url, token("fleet", per={"fleet": {"*": "R"}}))
    await fleet.ok(subscribe_msg("fleet"))
    await fleet.ok(subscribe_msg("fleet", "e"))
    await fleet.ok(
        {"typ": "sub", "act": "cre", "id": "s", "rea": "fleet", "dat": {"typ": "obj", "sty": "rea"}}
    )
    await fleet.marker()

    provider = await RawClient.open(server.ws_url, token("gw", dpv={"fleet-eu": ["*"]}))
    await admin.ok(
        {"typ": "rea", "act": "pub", "id": "fleet-eu", "dat": {"eve": "e", "idp": "v/1"}}
    )
    await admin.ok({"typ": "obj", "act": "upd", "rea": "fleet-eu", "id": "v/1", "dat": {"x": 1}})
    eu = await admin.ok({"typ": "obj", "act": "rea", "rea": "fleet-eu", "id": "v/1"})
    assert eu["cst"] == "con"
    start = len(fleet.received)
    await fleet.marker()
    assert fleet.received[start:-1] == []

    listed = await fleet.ok({"typ": "obj", "act": "lis", "rea": "fleet"})
    assert listed == {"v/1": {"id": "v/1", "lab": "", "cst": "dis"}}
    assert (await fleet.ok({"typ": "obj", "act": "rea", "rea": "fleet", "id": "v/1"}))["dat"] == {
        "r": "fleet"
    }
    denied = await fleet.request({"typ": "obj", "act": "rea", "rea": "fleet-eu", "id": "v/1"})
    assert denied["erc"] == 403
    for client in (provider, fleet, admin):
        await client.close()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a/b", "c"), ("a", "b/c")),
        (("a:b", "c"), ("a", "b:c")),
        (("a", "b\x00c"), ("a\x00b", "c")),
    ],
)
async def test_realm_and_id_pairs_that_join_alike_stay_apart(
    server: HivekitServer, token: Mint, first: tuple[str, str], second: tuple[str, str]
) -> None:
    admin = await RawClient.open(server.ws_url, token("admin"))
    for realm, object_id in (first, second):
        await admin.ok({"typ": "rea", "act": "cre", "id": realm})
        await admin.ok({"typ": "obj", "act": "cre", "rea": realm, "id": object_id, "lab": realm})
        await admin.ok(subscribe_msg(realm))
    provider = await RawClient.open(server.ws_url, token("gw", dpv={first[0]: [first[1]]}))
    await admin.wait_for(is_status(first[1], "con"))
    await admin.marker()
    assert admin.statuses() == [(first[0], first[1], "con")]
    for (realm, object_id), cst in ((first, "con"), (second, "dis")):
        stored = await admin.ok({"typ": "obj", "act": "rea", "rea": realm, "id": object_id})
        assert (stored["lab"], stored["cst"]) == (realm, cst)
    await admin.ok({"typ": "obj", "act": "del", "rea": second[0], "id": second[1]})
    assert (await admin.ok({"typ": "obj", "act": "rea", "rea": first[0], "id": first[1]}))[
        "cst"
    ] == "con"
    await provider.close()
    await admin.close()


# -- property-based fuzzing ----------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight (`st.one_of` weighs them alike)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


TYPES = ["rea", "obj", "sub", "sys"]
ACTIONS = [
    "cre",
    "rea",
    "lis",
    "upd",
    "del",
    "set",
    "aut",
    "hbt",
    "sub",
    "uns",
    "pub",
    "sta",
    "pre",
]
IDS = ["fz", "o/1", "o/2", "*", "o/*", "", "s1", "x" * 1025]
KEYS = ["typ", "act", "cid", "id", "rea", "dat", "lab", "loc", "tds"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
ids = st.sampled_from(IDS)
coordinates = st.floats(-200, 200) | st.integers(-200, 200)
shapes = st.one_of(
    st.fixed_dictionaries({k: coordinates for k in ("x1", "y1", "x2", "y2")}),
    st.fixed_dictionaries({"cx": coordinates, "cy": coordinates, "r": st.floats(-10, 1e7)}),
    st.fixed_dictionaries(
        {
            "points": st.lists(
                st.fixed_dictionaries({"x": coordinates, "y": coordinates}), max_size=5
            )
        }
    ),
    json_values,
)
options = st.fixed_dictionaries(
    {},
    optional={
        "eve": st.sampled_from(["e", "connectionStatusChanged", ""]),
        "idp": ids,
        "dat": json_values,
        "typ": st.sampled_from(["obj", "rea", "sys"]),
        "sty": st.sampled_from(["rea", "rec", "cir", "pol", "tar"]),
        "sha": shapes,
        "sta": st.fixed_dictionaries({"id": ids, "r": st.floats(-1, 1e6)}),
        "atr": st.lists(
            st.sampled_from(["a=1", "$id=o/1", "$cst=con", "b>2", 'c!="x"', "=", "a=="]), max_size=3
        ),
        "exe": st.booleans(),
        "fie": st.lists(st.text(max_size=4), max_size=3),
    },
)
PAIRS = sorted((typ, act) for typ, acts in WIRE_ACTIONS.items() for act in acts)
well_typed = st.builds(
    lambda pair, fields: {"typ": pair[0], "act": pair[1], **fields},
    weighted(
        (9, st.sampled_from(PAIRS)),
        (1, st.tuples(st.sampled_from(TYPES), st.sampled_from(ACTIONS))),
    ),
    st.fixed_dictionaries(
        {"id": ids, "rea": st.sampled_from(["fz"] * 4 + ["nope"])},
        optional={
            "cid": st.text(max_size=4) | st.integers(0, 2**63),
            "dat": options | json_values,
            "lab": st.text(max_size=6),
            "loc": st.fixed_dictionaries(
                {},
                optional={
                    "lon": coordinates,
                    "lat": coordinates,
                    "spe": st.floats(-1, 100),
                    "tim": st.text(max_size=6),
                    "gcs": st.text(max_size=4),
                },
            ),
            "tds": st.lists(st.text(max_size=4), max_size=3),
        },
    ),
)
mutated = st.tuples(well_typed, st.sampled_from(KEYS), json_values).map(
    lambda mutation: {**mutation[0], mutation[1]: mutation[2]}
)
messages = weighted((6, well_typed), (2, mutated), (1, json_values))
"""Mostly messages that reach the handlers, some with one field of a wrong type, some junk."""

frames: st.SearchStrategy[str | bytes] = weighted(
    (6, st.lists(messages, max_size=5).map(lambda items: orjson.dumps(items).decode())),
    (1, json_values.map(lambda value: orjson.dumps(value).decode())),
    (1, st.text(max_size=40)),
    (1, st.binary(max_size=20)),
)
"""Mostly arrays of messages; some JSON that is not an array, text that is not JSON, bytes."""


def unique_cids(frame: str | bytes, n: int) -> tuple[str | bytes, set[Any]]:
    """Give each usable ``cid`` of a frame a unique value; (new frame, cids that need a reply)."""
    if isinstance(frame, bytes):
        return frame, set()
    try:
        items = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return frame, set()
    if not isinstance(items, list):
        return frame, set()
    expected: set[Any] = set()
    for index, item in enumerate(items):
        if (
            isinstance(item, dict)
            and isinstance(item.get("cid"), str | int)
            and not isinstance(item["cid"], bool)
        ):
            cid = item["cid"]
            item["cid"] = f"c{n}-{index}" if isinstance(cid, str) else 1000 * n + index
            if (item.get("typ"), item.get("act")) != ("obj", "set"):  # a set never replies
                expected.add(item["cid"])
    return orjson.dumps(items).decode(), expected


def check_well_formed(message: Any) -> None:
    assert isinstance(message, dict), message
    if "res" in message or "cid" in message:
        assert message["res"] in ("suc", "err", "war"), message
        if message["res"] == "err":
            assert isinstance(message["erc"], int) and isinstance(message["err"], str), message
            assert message["erc"] != 500, message
    else:  # a push
        assert (message.get("typ"), message.get("act")) == ("rea", "pub") or message.get(
            "typ"
        ) == "sub", message


class ErrorLog(logging.Handler):
    """Keeps every error the server (or the websockets library under it) logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capturing_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("hivectl.server", "websockets")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@contextlib.contextmanager
def server_thread(**overrides: Any) -> Iterator[HivekitServer]:
    """A real server on its own event loop in a thread, for synchronous (hypothesis) tests."""
    loop = asyncio.new_event_loop()
    server = HivekitServer(make_settings(**overrides))
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fuzzed-server", daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def exchange(ws: ClientConnection, frame: str | bytes, marker: str) -> list[Any]:
    """Send a frame, then a heartbeat; every message received up to the heartbeat's reply."""
    ws.send(frame)
    ws.send(orjson.dumps([hbt(marker)]).decode())
    received: list[Any] = []
    while True:
        value = orjson.loads(ws.recv(timeout=5))
        assert isinstance(value, list), value
        for message in value:
            if isinstance(message, dict) and message.get("cid") == marker:
                assert message["res"] == "suc"
                return received
            received.append(message)


FUZZ_REALM = '[{"typ": "rea", "act": "cre", "id": "fz"}]'
FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_fuzzed_frames_over_a_real_connection_always_get_well_formed_answers() -> None:
    limits = {"limits.messages_per_second": 100000, "limits.burst": 100000}
    with (
        capturing_errors() as errors,
        server_thread(**limits) as server,
        connect(server.ws_url, proxy=None) as ws,
    ):
        ws.send(f"Bearer {mint('fuzzer')}")
        assert orjson.loads(ws.recv(timeout=5))[0]["res"] == "suc"
        counter = iter(range(10**9))

        @settings(FUZZ_SETTINGS, max_examples=200)
        @given(frames)
        def check(frame: str | bytes) -> None:
            n = next(counter)
            exchange(ws, FUZZ_REALM, f"realm-{n}")  # deleting it is fair, but only once
            frame, expected = unique_cids(frame, n)
            received = exchange(ws, frame, f"marker-{n}")
            for message in received:
                check_well_formed(message)
            # Each request with a cid got exactly one reply (a Bearer frame is not requests).
            if not (isinstance(frame, str) and frame.startswith("Bearer ")):
                replied = [m["cid"] for m in received if m.get("cid") in expected]
                assert sorted(map(str, replied)) == sorted(map(str, expected)), received

        check()
        assert exchange(ws, "[]", "still-usable") == []
    assert errors.records == []


def test_fuzzed_messages_straight_into_the_hub() -> None:
    """The same property without sockets, so many more examples run in the same time."""
    hub = bare_hub(**{"limits.messages_per_second": 10**6, "limits.burst": 10**6})
    session: Session = hub.new_session("n:1")
    assert hub.authenticate(session, mint("fuzzer", dpv={"fz": ["o/*"]}), 1.0)
    counter = iter(range(10**9))

    @settings(FUZZ_SETTINGS, max_examples=300)
    @given(frames, st.text(max_size=30))
    def check(frame: str | bytes, bearer: str) -> None:
        n = next(counter)
        now = 2.0 + n
        with capturing_errors() as errors:
            if "fz" not in hub.realms:
                hub.handle_frame(session, FUZZ_REALM, now)
            hub.authenticate(session, bearer, now)
            hub.handle_frame(session, frame, now)
            sent = take_sent(hub)
            later = run_due(hub, now + 0.5)  # as the shell does at the hub's deadlines
            sent.setdefault(session.conn_id, []).extend(later.get(session.conn_id, []))
        assert errors.records == []
        for message in sent.get(session.conn_id, []):
            check_well_formed(message)

    check()


def test_patterns_a_client_makes_up_do_not_pile_up_in_memory() -> None:
    """Subscribing and unsubscribing ever new long patterns leaves memory where it was."""
    hub = bare_hub(**{"limits.messages_per_second": 10**6, "limits.burst": 10**6})
    session = hub.new_session("n:1")
    assert hub.authenticate(session, mint(), 1.0)
    hub.handle_frame(session, '[{"typ": "rea", "act": "cre", "id": "r"}]', 1.0)

    def pattern(n: int) -> str:  # 1024 characters in 340 pieces, unlike any other
        return "*".join(f"{n:05d}"[i % 5] + chr(65 + i % 26) for i in range(340))[:MAX_ID_LENGTH]

    before = rss()
    for batch in range(8):
        frame = []
        for n in range(batch * 500, (batch + 1) * 500):
            frame.append(subscribe_msg("r", "e", pattern(n)))
            frame.append({**subscribe_msg("r", "e", pattern(n)), "act": "uns"})
        hub.handle_frame(session, orjson.dumps(frame).decode(), 2.0)
        take_sent(hub)
    grown = rss() - before
    assert grown < 64 * 2**20, f"{grown / 2**20:.0f} MiB for 4000 patterns"  # 100 MiB before
