"""Messages from the browser are untrusted: malformed ones are ignored (nothing sent back, nothing raised) and the
first one per widget is logged once; valid resend requests are answered as before."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from tinygrad_nb.notebook import LossCurve, RecordingComm
from tinygrad_nb.notebook.throttle import PROCESS_BUCKET, TokenBucket
from tinygrad_nb.notebook.widgets.base import MAX_COUNT, MalformedMessage, parse_sync_request

LOGGER = "tinygrad_nb.notebook.widgets.base"


class Nested:
    """Not JSON at all: what a buggy frontend bridge could hand over."""


# (message, what the log line says is wrong)
MALFORMED: list[tuple[Any, str]] = [
    (None, "expected an object, got NoneType None"),
    ("sync", "expected an object, got str 'sync'"),
    ([{"kind": "sync"}], "expected an object, got list"),
    ({}, "no 'kind' field"),
    ({"have": {}, "records": 0}, "no 'kind' field"),
    ({"kind": "resend", "have": {}, "records": 0}, "unknown kind 'resend'"),
    ({"kind": ["sync"], "have": {}, "records": 0}, "unknown kind ['sync']"),
    ({"kind": "sync", "records": 0}, "a sync request without 'have'"),
    ({"kind": "sync", "have": {}}, "a sync request without 'records'"),
    ({"kind": "sync", "have": None, "records": 0}, "'have' is NoneType None, not an object"),
    ({"kind": "sync", "have": [["loss", 3]], "records": 0}, "'have' is list [['loss', 3]], not an object"),
    ({"kind": "sync", "have": "loss", "records": 0}, "'have' is str 'loss', not an object"),
    ({"kind": "sync", "have": {1: 3}, "records": 0}, "'have' has a key that is not a string: 1"),
    ({"kind": "sync", "have": {"loss": "3"}, "records": 0}, "'have'['loss'] is str '3', not an integer"),
    ({"kind": "sync", "have": {"loss": 3.0}, "records": 0}, "'have'['loss'] is float 3.0, not an integer"),
    ({"kind": "sync", "have": {"loss": True}, "records": 0}, "'have'['loss'] is bool True, not an integer"),
    ({"kind": "sync", "have": {"loss": None}, "records": 0}, "'have'['loss'] is NoneType None, not an integer"),
    ({"kind": "sync", "have": {"loss": -1}, "records": 0}, "'have'['loss'] is negative (-1)"),
    ({"kind": "sync", "have": {"loss": 2**53}, "records": 0}, "'have'['loss'] is too large (9007199254740992)"),
    ({"kind": "sync", "have": {"loss": 10**400}, "records": 0}, "'have'['loss'] is too large"),
    ({"kind": "sync", "have": {"loss": {"a": [1, {"b": 2}]}}, "records": 0}, "'have'['loss'] is dict"),
    ({"kind": "sync", "have": {"loss": Nested()}, "records": 0}, "'have'['loss'] is Nested"),
    ({"kind": "sync", "have": {}, "records": -5}, "'records' is negative (-5)"),
    ({"kind": "sync", "have": {}, "records": False}, "'records' is bool False, not an integer"),
    ({"kind": "sync", "have": {}, "records": 1.5}, "'records' is float 1.5, not an integer"),
    ({"kind": "sync", "have": {}, "records": float("nan")}, "'records' is float nan, not an integer"),
    ({"kind": "sync", "have": {}, "records": [[[[0]]]]}, "'records' is list"),
    ({"kind": "sync", "have": {}, "records": 2**64}, "'records' is too large (18446744073709551616)"),
]


def curve_with_points(comm: RecordingComm, n: int = 50) -> LossCurve:
    curve = LossCurve(comm=comm, show=False, title="loss")
    curve.channel.bucket = TokenBucket()  # a private rate limit: the process-wide one is left to other tests
    for step in range(n):
        curve.log(loss=float(step), step=step)
    curve.flush()
    return curve


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("message", "reason"), MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_message_is_ignored_and_logged_once(message: Any, reason: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    comm = RecordingComm()
    curve = curve_with_points(comm)
    sent = len(comm.custom())
    with pytest.raises(MalformedMessage) as info:
        parse_sync_request(message)
    assert reason in str(info.value)

    curve._on_browser_message(curve.view, message, [])  # straight into the handler: nothing escapes
    comm.receive(message)  # and through the comm, as ipywidgets delivers it (its dispatcher would log an exception)
    curve._on_browser_message(curve.view, message, [])
    assert len(comm.custom()) == sent  # nothing answered
    records = warnings_from(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].name == LOGGER and records[0].levelno == logging.WARNING
    text = records[0].getMessage()
    assert text.startswith("LossCurve widget 'loss': ignored a malformed message from the browser (")
    assert reason in text
    curve.close()


def test_logged_once_per_widget(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = RecordingComm(), RecordingComm()
    a, b = curve_with_points(first), curve_with_points(second)
    for message, _ in MALFORMED:
        a._on_browser_message(a.view, message, [])
    assert len(warnings_from(caplog)) == 1
    b._on_browser_message(b.view, {"kind": "sync", "have": {}, "records": -1}, [])
    records = warnings_from(caplog)
    assert len(records) == 2 and "'records' is negative (-1)" in records[1].getMessage()
    a.close()
    b.close()


def test_a_malformed_message_does_not_stop_valid_ones(caplog: pytest.LogCaptureFixture) -> None:
    comm = RecordingComm()
    curve = curve_with_points(comm)
    comm.receive({"kind": "sync", "have": {"loss": -1}, "records": 0})
    sent = len(comm.custom())
    comm.receive({"kind": "sync", "have": {"loss": 30}, "records": 0})
    assert len(comm.custom()) == sent + 1
    content, buffers = comm.custom()[-1]
    assert content["series"][0]["start"] == 30
    rows = np.frombuffer(buffers[0], dtype=np.float32).reshape(-1, 2)
    np.testing.assert_array_equal(rows[:, 1], np.arange(30, 50, dtype=np.float32))
    assert len(warnings_from(caplog)) == 1
    curve.close()


@pytest.mark.parametrize(("have", "start", "rows"), [
    ({"loss": 0}, 0, 50),
    ({}, 0, 50),  # a reloaded page: everything
    ({"loss": 49}, 49, 1),
    ({"loss": 50}, None, 0),  # up to date: an answer without series
    ({"loss": 1000}, None, 0),  # more than there is: nothing to resend
    ({"loss": MAX_COUNT - 1, "other": 3}, None, 0),  # unknown series names are ignored
])
def test_valid_requests_are_answered(have: dict[str, int], start: int | None, rows: int,
                                     caplog: pytest.LogCaptureFixture) -> None:
    comm = RecordingComm()
    curve = curve_with_points(comm)
    sent = len(comm.custom())
    comm.receive({"kind": "sync", "have": have, "records": 0, "extra": "ignored"})
    assert len(comm.custom()) == sent + 1
    content, buffers = comm.custom()[-1]
    assert content["kind"] == "data" and content["records"] == {"start": 0, "items": []}
    if start is None:
        assert content["series"] == [] and buffers == []
    else:
        assert [s["start"] for s in content["series"]] == [start]
        values = np.frombuffer(buffers[0], dtype=np.float32).reshape(-1, 2)[:, 1]
        np.testing.assert_array_equal(values, np.arange(50 - rows, 50, dtype=np.float32))
    assert warnings_from(caplog) == []
    curve.close()


def test_the_process_rate_limit_is_untouched() -> None:
    before = PROCESS_BUCKET.tokens
    curve_with_points(RecordingComm()).close()
    assert PROCESS_BUCKET.tokens >= before


def test_closed_widget_ignores_everything(caplog: pytest.LogCaptureFixture) -> None:
    comm = RecordingComm()
    curve = curve_with_points(comm)
    curve.close()
    sent = len(comm.custom())
    curve._on_browser_message(curve.view, {"kind": "sync", "have": {}, "records": 0}, [])
    curve._on_browser_message(curve.view, {"kind": "sync", "have": {}, "records": -1}, [])
    assert len(comm.custom()) == sent and warnings_from(caplog) == []
