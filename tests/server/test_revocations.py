"""The revocation rules (`server.model.revocations`): what a revocation covers and when it is
forgotten, with time passed in."""

from __future__ import annotations

from server.model.revocations import Revocations, merged, revoke_jti, revoke_sub

NOW = 1_800_000_000.0
DAY = 86_400.0


def test_a_jti_revocation_is_forgotten_at_the_tokens_exp_when_known() -> None:
    assert revoke_jti("j1", NOW + 60, DAY, NOW).expires == NOW + 60
    assert revoke_jti("j1", NOW + 60, 0, NOW).expires == NOW + 60


def test_a_jti_revocation_of_unknown_exp_lasts_the_longest_token_lifetime() -> None:
    assert revoke_jti("j1", None, DAY, NOW).expires == NOW + DAY
    assert revoke_jti("j1", None, 0, NOW).expires is None  # no bound: kept for ever


def test_a_sub_revocation_covers_tokens_issued_before_and_lasts_from_then() -> None:
    default = revoke_sub("rider-12", None, DAY, NOW)
    assert (default.issued_before, default.expires) == (NOW, NOW + DAY)
    earlier = revoke_sub("rider-12", NOW - 100, DAY, NOW)
    assert (earlier.issued_before, earlier.expires) == (NOW - 100, NOW - 100 + DAY)
    assert revoke_sub("rider-12", None, 0, NOW).expires is None


def test_what_a_revocation_covers() -> None:
    revocations = Revocations()
    assert not revocations.revokes("rider-12", "j1", NOW)
    revocations.add(revoke_jti("j1", None, DAY, NOW))
    revocations.add(revoke_sub("rider-12", NOW, DAY, NOW))
    assert revocations.revokes(None, "j1", None)
    assert revocations.revokes("someone", "j1", NOW + 10)
    assert not revocations.revokes("someone", "j2", NOW - 10)
    assert revocations.revokes("rider-12", None, NOW - 1)  # issued before
    assert not revocations.revokes("rider-12", None, NOW)  # issued at or after: a new token
    assert revocations.revokes("rider-12", None, None)  # no iat: cannot show it is newer
    assert not revocations.revokes("rider-13", None, NOW - 1)
    assert len(revocations) == 2


def test_a_second_revocation_of_a_target_keeps_what_either_covers() -> None:
    first = revoke_sub("s", NOW - 50, DAY, NOW - 60)
    second = revoke_sub("s", NOW - 500, DAY, NOW)
    both = merged(first, second)
    assert (both.issued_before, both.expires, both.at) == (NOW - 50, NOW - 50 + DAY, NOW)
    forever = merged(revoke_jti("j", NOW + 5, DAY, NOW), revoke_jti("j", None, 0, NOW))
    assert forever.expires is None
    revocations = Revocations()
    revocations.add(first)
    assert revocations.add(second) == both
    assert revocations.listed() == [both]


def test_revocations_are_forgotten_once_every_token_they_cover_has_expired() -> None:
    revocations = Revocations()
    short = revocations.add(revoke_jti("short", NOW + 60, DAY, NOW))
    sub = revocations.add(revoke_sub("s", NOW, 3600, NOW + 1))
    kept = revocations.add(revoke_jti("kept", None, 0, NOW + 2))
    assert revocations.forget(NOW + 59) == []
    assert revocations.forget(NOW + 60) == [short]
    assert not revocations.revokes(None, "short", None)
    assert revocations.listed() == [sub, kept]
    assert revocations.forget(NOW + 10 * DAY) == [sub]
    assert revocations.listed() == [kept]


def test_the_wire_form_names_the_target_and_the_times() -> None:
    assert revoke_jti("j1", None, 0, 0.0).to_wire() == {
        "jti": "j1",
        "expires": None,
        "at": "1970-01-01T00:00:00.000Z",
    }
    assert revoke_sub("s", 1.5, 10, 2.0).to_wire() == {
        "sub": "s",
        "issuedBefore": "1970-01-01T00:00:01.500Z",
        "expires": "1970-01-01T00:00:11.500Z",
        "at": "1970-01-01T00:00:02.000Z",
    }
