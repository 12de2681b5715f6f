"""What a span says about an answer: its id and finish reasons, read only when tracing.

The usage and model are read by the relays already; these two are read here, from the whole
body of a non-streamed answer or from the data of a stream's last events (`SSERelay.captured`),
so a request that is not traced never pays for them. Values from the provider are bounded and
must be printable ASCII: an upstream's text does not reach a span unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from keystead.tracing.semconv import clean

__all__ = ["from_body", "from_events"]

_MAX_CHOICES = 16
_TAIL_EVENTS = 32  # a stream's finish reasons are in its last events
_FINISH = b'"finish_reason"'


class _Choice(msgspec.Struct):
    index: int = 0
    finish_reason: str | None = None


class _Answer(msgspec.Struct):
    id: str | None = None
    choices: list[_Choice] | None = None
    stop_reason: str | None = None  # Anthropic's Messages API


_DECODE = msgspec.json.Decoder(_Answer)


def _decode(data: bytes) -> _Answer | None:
    try:
        return _DECODE.decode(data)
    except msgspec.DecodeError:
        return None


def from_body(body: bytes) -> tuple[str | None, tuple[str, ...]]:
    """(response id, finish reasons) of a whole answer; (None, ()) when it says neither."""
    answer = _decode(body)
    if answer is None:
        return None, ()
    reasons: list[str] = []
    for choice in (answer.choices or ())[:_MAX_CHOICES]:
        reason = clean(choice.finish_reason, 64)
        if reason is not None:
            reasons.append(reason)
    stop = clean(answer.stop_reason, 64)
    if stop is not None:
        reasons.append(stop)
    return clean(answer.id, 128), tuple(reasons)


def from_events(payloads: Sequence[bytes]) -> tuple[str | None, tuple[str, ...]]:
    """(response id, finish reasons) of a stream, from its events' data payloads in order:
    the id from the first that has one, a reason per choice from the last events."""
    response_id = None
    for data in payloads[:2]:
        answer = _decode(data)
        if answer is not None and answer.id is not None:
            response_id = clean(answer.id, 128)
            break
    reasons: dict[int, str] = {}
    for data in reversed(payloads[-_TAIL_EVENTS:]):
        if _FINISH not in data:
            continue
        answer = _decode(data)
        for choice in (answer.choices or ()) if answer is not None else ():
            reason = clean(choice.finish_reason, 64)
            if reason is not None and choice.index not in reasons \
                    and len(reasons) < _MAX_CHOICES:
                reasons[choice.index] = reason
    return response_id, tuple(reasons[index] for index in sorted(reasons))
