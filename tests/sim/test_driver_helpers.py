"""The driver's small helpers: failure reasons and the open-file limit."""

from __future__ import annotations

import resource

from hivectl.client import AuthenticationError, HivekitError
from hivectl.client.errors import ConnectionLost
from hivectl.sim.driver import failure_reason, raise_open_file_limit


def test_failure_reasons_are_short_and_countable() -> None:
    assert (
        failure_reason(AuthenticationError(401, "token has expired")) == "auth: token has expired"
    )
    assert failure_reason(ConnectionLost("gone")) == "connection lost"
    assert failure_reason(HivekitError(429, "rate limited")) == "error 429: rate limited"
    assert failure_reason(ConnectionRefusedError(111, "Connection refused")) == "refused"
    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(OSError(24, "Too many open files")) == "os: Too many open files"


def test_open_file_limit_is_raised_to_the_hard_limit_or_explained() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    enough = raise_open_file_limit(16)
    assert enough.note is None and enough.soft is not None and enough.soft >= soft
    too_many = hard if hard != resource.RLIM_INFINITY else 2**62
    short = raise_open_file_limit(too_many + 1)
    assert short.note is not None and "file descriptors needed" in short.note
    assert short.as_dict()["needed"] == too_many + 1
