"""The TCP errno table: the one place where a finished connect becomes a port state."""

from __future__ import annotations

import errno

import pytest

from scanner.transport import Backpressure, classify_errno


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (0, ("open", "syn-ack")),
        (errno.ECONNRESET, ("open", "syn-ack")),  # accepted, then reset before we looked
        (errno.ECONNREFUSED, ("closed", "conn-refused")),
        (errno.ETIMEDOUT, ("filtered", "no-response")),
        (errno.EHOSTUNREACH, ("filtered", "host-unreach")),
        (errno.ENETUNREACH, ("filtered", "net-unreach")),
        (errno.EACCES, ("filtered", "admin-prohibited")),
        (errno.ENOPROTOOPT, ("filtered", "proto-unreach")),
        (errno.EPROTO, ("filtered", "error")),  # no known meaning: said, not guessed
    ],
)
def test_connect_errnos_map_to_states(err: int, expected: tuple[str, str]) -> None:
    answer = classify_errno(err)
    assert (answer.state.value, answer.reason.value) == expected


@pytest.mark.parametrize(
    "err", [errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EAGAIN]
)
def test_local_resource_errors_are_backpressure(err: int) -> None:
    with pytest.raises(Backpressure) as caught:
        classify_errno(err)
    assert caught.value.descriptors is (err in (errno.EMFILE, errno.ENFILE))
