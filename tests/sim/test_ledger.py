"""Expected presence events: multi-device, gateways, early events, duplicates, loss, aborts."""

from __future__ import annotations

from hivectl.sim.ledger import PresenceLedger


def ledger() -> PresenceLedger:
    return PresenceLedger(deadline_s=1.0, abort_deadline_s=10.0)


def test_one_device_connect_and_close_match_with_latencies() -> None:
    book = ledger()
    assert book.provider_up("a.d0", ("riders/a",), at=1.0) == []
    [match] = book.seen("riders/a", "con", at=1.25)
    assert (match.expected.cause, match.latency_s, match.late) == ("connect", 0.25, False)
    book.provider_down("a.d0", "close", at=2.0)
    assert book.pending() == 1
    [match] = book.seen("riders/a", "dis", at=2.5)
    assert match.expected.status == "dis"
    summary = book.summary()
    assert (summary.expected, summary.seen, summary.matched, summary.lost) == (2, 2, 2, 0)
    assert summary.objects_connected_once == 1


def test_only_first_arrival_and_last_departure_are_expected() -> None:
    book = ledger()
    book.provider_up("a.d0", ("riders/a",), at=1.0)
    book.provider_up("a.d1", ("riders/a",), at=1.1)
    book.provider_down("a.d0", "close", at=2.0)
    assert book.pending() == 1  # only the first connect
    book.provider_down("a.d1", "abort", at=3.0)
    assert [e.status for q in book._queues.values() for e in q] == ["con", "dis"]


def test_a_gateway_covers_its_riders_devices() -> None:
    book = ledger()
    book.provider_up("g0", ("riders/g0-0", "riders/g0-1"), at=1.0)
    book.provider_up("g0-0.d0", ("riders/g0-0",), at=1.5)
    book.provider_down("g0-0.d0", "close", at=2.0)  # the gateway still provides it
    assert book.pending() == 2
    book.provider_down("g0", "close", at=3.0)
    assert book.pending() == 4
    assert book.connected_objects == 0


def test_an_event_seen_before_the_connect_is_known_is_matched_later() -> None:
    book = ledger()
    assert book.seen("riders/a", "con", at=1.2) == []
    [match] = book.provider_up("a.d0", ("riders/a",), at=1.0)
    assert abs(match.latency_s - 0.2) < 1e-9
    assert book.summary().unexpected == 0


def test_duplicates_unexpected_and_lost_are_counted() -> None:
    book = ledger()
    book.provider_up("a.d0", ("riders/a",), at=1.0)
    book.seen("riders/a", "con", at=1.1)
    book.seen("riders/a", "con", at=1.2)  # the server said it twice
    book.seen("riders/b", "dis", at=1.3)  # nobody did anything to b
    book.provider_up("c.d0", ("riders/c",), at=2.0)  # never seen
    summary = book.summary()
    assert (summary.duplicated, summary.unexpected, summary.lost) == (1, 1, 1)
    assert summary.seen == summary.matched + summary.duplicated + summary.unexpected


def test_late_events_are_matched_but_counted_late() -> None:
    book = ledger()
    book.provider_up("a.d0", ("riders/a",), at=1.0)
    [match] = book.seen("riders/a", "con", at=3.0)
    assert match.late
    summary = book.summary()
    assert (summary.late, summary.lost) == (1, 0)


def test_unseen_abort_is_unconfirmed_not_lost_and_holds_a_reconnect() -> None:
    book = ledger()
    book.provider_up("a.d0", ("riders/a",), at=1.0)
    book.seen("riders/a", "con", at=1.1)
    book.provider_down("a.d0", "abort", at=2.0)
    assert book.awaiting_soft(("riders/a",))
    summary = book.summary()
    assert (summary.expected, summary.lost, summary.abort_unconfirmed) == (1, 0, 1)
    [match] = book.seen("riders/a", "dis", at=2.5)
    assert match.expected.cause == "abort" and not match.late
    assert not book.awaiting_soft(("riders/a",))
    assert book.summary().expected == 2
