"""OutageLog: one outage of a backing service is logged as one, not once a second."""

from __future__ import annotations

import logging

import pytest

from keystead.state.outage import OutageLog

log = logging.getLogger("keystead.test-outage")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_failure_with_its_traceback_then_a_line_every_30s_then_the_recovery(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = OutageLog(log, "writing the usage ledger", every_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger=log.name):
        outage.ok()  # nothing to say while it works
        for _ in range(75):  # 75 s of failures, one a second
            outage.failed(ConnectionRefusedError("[Errno 111] Connect call failed\nmore text"))
            clock.now += 1
        assert outage.failing
        outage.ok()
        outage.ok()
    lines = [(r.levelname, r.exc_info is not None, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", True, "writing the usage ledger failed; retrying, and logging it again at "
                        "most every 30s until it works"),
        ("ERROR", False, "writing the usage ledger still failing after 30s (31 attempts): "
                         "ConnectionRefusedError: [Errno 111] Connect call failed"),
        ("ERROR", False, "writing the usage ledger still failing after 60s (61 attempts): "
                         "ConnectionRefusedError: [Errno 111] Connect call failed"),
        ("WARNING", False, "writing the usage ledger works again after 75.0s (75 failed "
                           "attempts)"),
    ]
    assert not outage.failing


def test_a_second_outage_is_logged_in_full_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = OutageLog(log, "reloading keys", clock=clock)
    with caplog.at_level(logging.INFO, logger=log.name):
        outage.failed(TimeoutError())
        outage.ok()
        clock.now += 5
        outage.failed(OSError("gone"))
    assert [(r.levelname, r.exc_info is not None) for r in caplog.records] == [
        ("ERROR", True), ("WARNING", False), ("ERROR", True)]
