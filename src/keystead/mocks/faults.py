"""Scripted faults for the mock upstream: what the n-th attempt of the same request gets.

A retrying gateway sends the same body several times, so a fault that is a pure function of the
request cannot test it. A script is a comma-separated list of steps, consumed one per attempt,
then normal answers. The syntax, parsed here into `FaultStep`s:

    script := step ("," step)*
    step   := base ["*" [N]]                 N >= 1 times; a bare "*" forever (last step only)
    base   := "ok" | "badjson" | "context" | "schema"
            | STATUS (":retry=" S | ":retry_ms=" MS)*   400-599; options on 429 and 503 only
            | "slow=" MS | "stall=" MS                   milliseconds, a number >= 0
            | "reset" ["=" K]                            K >= 0 content chunks first

What each step does is the mock's business: see the `mocks.openai_upstream` docstring and
docs/testing-faults.md. Requests carry a script in a `[[mock:faults=SPEC]]` directive (see
`mocks.content`), a mock provider in `mock.faults` of the config. `FaultScripts` counts the
attempts per (mock app, script text, model).

Deliberately stdlib-only: the config model imports this to validate `mock.faults` at load time.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = [
    "MAX_SCRIPTS",
    "OK",
    "FaultDirective",
    "FaultKind",
    "FaultScripts",
    "FaultSpecError",
    "FaultStep",
    "parse_faults",
    "step_at",
]

FaultKind = Literal["ok", "status", "slow", "stall", "reset", "badjson", "context", "schema"]

MAX_SCRIPTS = 10_000
_RETRYABLE_WITH_HINT = (429, 503)
_PLAIN: dict[str, FaultKind] = {
    "ok": "ok",
    "badjson": "badjson",
    "context": "context",
    "schema": "schema",
}
_DELAYS: dict[str, FaultKind] = {"slow": "slow", "stall": "stall"}
_STEP = re.compile(r"^(?P<base>[^*]+?)\s*(?:\*\s*(?P<times>\S*))?$")
_GRAMMAR = (
    "ok, a status 400-599 (429/503 may add :retry=S or :retry_ms=MS), slow=MS, stall=MS, "
    "reset, reset=K, badjson, context or schema, each optionally followed by *N or *"
)


class FaultDirective(NamedTuple):
    """A `[[mock:faults@MODEL=SPEC]]` directive as written; `model` None when unscoped."""

    model: str | None
    spec: str


class FaultSpecError(ValueError):
    """A fault script that does not parse (only raised when parsing strictly)."""


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One step of a script. `times` is how many attempts it covers; None means forever."""

    kind: FaultKind
    status: int | None = None  # kind "status"
    retry_after: int | None = None  # seconds, for `retry-after`
    retry_after_ms: int | None = None  # for `retry-after-ms` (and a rounded-up `retry-after`)
    delay_ms: float = 0  # kinds "slow" and "stall"
    after_chunks: int | None = None  # kind "reset": content chunks sent before the drop
    times: int | None = 1

    def retry_headers(self) -> list[tuple[bytes, bytes]] | None:
        """The retry hint headers this step asks for, or None for the status's default."""
        if self.retry_after is None and self.retry_after_ms is None:
            return None
        headers = []
        if self.retry_after_ms is not None:
            headers.append((b"retry-after-ms", str(self.retry_after_ms).encode()))
        seconds = self.retry_after
        if seconds is None and self.retry_after_ms is not None:
            seconds = math.ceil(self.retry_after_ms / 1000)
        headers.append((b"retry-after", str(seconds).encode()))
        return headers


OK = FaultStep("ok")  # also what a request without a script gets


def parse_faults(spec: str, *, strict: bool = True) -> tuple[FaultStep, ...]:
    """Parse a script such as `429:retry_ms=1500,500*2,ok`.

    Strictly (the config), a bad step raises `FaultSpecError` saying which and why. Leniently
    (request directives, where bad values are ignored like any other directive's), a bad step
    counts as `ok`, so the later steps keep their positions.
    """
    raw_steps = [raw.strip() for raw in spec.split(",")]
    steps = []
    for index, raw in enumerate(raw_steps):
        try:
            step = _parse_step(raw.lower())
            if strict and step.times is None and index < len(raw_steps) - 1:
                raise ValueError("a step repeated forever (*) must be the last one")
        except ValueError as exc:
            if strict:
                raise FaultSpecError(
                    f"bad mock fault script {spec!r}: step {index + 1} {raw!r}: {exc}; "
                    f"steps are {_GRAMMAR}, separated by commas"
                ) from None
            step = OK
        steps.append(step)
    return tuple(steps)


@functools.lru_cache(maxsize=1024)
def _parse_lenient(spec: str) -> tuple[FaultStep, ...]:
    return parse_faults(spec, strict=False)


def _parse_step(text: str) -> FaultStep:
    match = _STEP.match(text)
    if match is None:
        raise ValueError("empty step")
    base, times_text = match["base"], match["times"]
    times: int | None = 1
    if times_text is not None:
        times = None if times_text == "" else _integer(times_text, "*N", minimum=1)
    if re.split(r"[:=]", base, maxsplit=1)[0].strip().isdigit():
        status_text, *options = (part.strip() for part in base.split(":"))
        if not status_text.isdigit():
            raise ValueError("a status takes no =value (options go after a colon)")
        return _status_step(int(status_text), options, times)
    name, equals, arg = (part.strip() for part in base.partition("="))
    if name in _PLAIN:
        if equals:
            raise ValueError(f"{name} takes no =value")
        return FaultStep(_PLAIN[name], times=times)
    if name in _DELAYS:
        try:
            delay = float(arg)
        except ValueError:
            delay = math.nan
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"{name}=MS needs a number of milliseconds >= 0")
        return FaultStep(_DELAYS[name], delay_ms=delay, times=times)
    if name == "reset":
        after = _integer(arg, "reset=K") if equals else None
        return FaultStep("reset", after_chunks=after, times=times)
    raise ValueError("unknown step")


def _status_step(status: int, options: list[str], times: int | None) -> FaultStep:
    """`STATUS[:retry=S][:retry_ms=MS]`."""
    if not 400 <= status <= 599:
        raise ValueError("a status must be between 400 and 599")
    found: dict[str, int] = {}
    for option in options:
        key, _, value = (part.strip() for part in option.partition("="))
        if key not in ("retry", "retry_ms") or key in found:
            raise ValueError(f"unknown or repeated status option {key!r} (retry=S, retry_ms=MS)")
        found[key] = _integer(value, f"{key}=")
    if found and status not in _RETRYABLE_WITH_HINT:
        raise ValueError("only 429 and 503 take :retry / :retry_ms")
    return FaultStep(
        "status",
        status=status,
        retry_after=found.get("retry"),
        retry_after_ms=found.get("retry_ms"),
        times=times,
    )


def _integer(text: str, what: str, minimum: int = 0) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise ValueError(f"{what} needs a whole number >= {minimum}, not {text!r}")
    return int(text)


def step_at(steps: tuple[FaultStep, ...], attempt: int) -> FaultStep | None:
    """The step for the `attempt`-th try (from 0), or None once the script is used up."""
    for step in steps:
        if step.times is None or attempt < step.times:
            return step
        attempt -= step.times
    return None


class FaultScripts:
    """Attempt counters of the scripts one mock app has seen, keyed by (script text, model).

    At most `limit` scripts are remembered; the one unused the longest is forgotten first (its
    next request starts the script again).
    """

    def __init__(self, limit: int = MAX_SCRIPTS):
        self._limit = limit
        self._attempts: dict[tuple[str, str], int] = {}

    def next_step(self, spec: str, model: str) -> FaultStep | None:
        """Count one attempt and return its step; None (answer normally) once used up.

        Parses leniently: a bad step is `ok`. Validate strictly beforehand where errors
        should surface (`parse_faults`).
        """
        key = (spec, model)
        attempt = self._attempts.pop(key, 0)  # re-inserted below: now the newest
        self._attempts[key] = attempt + 1
        if len(self._attempts) > self._limit:
            del self._attempts[next(iter(self._attempts))]
        return step_at(_parse_lenient(spec), attempt)

    def __len__(self) -> int:
        return len(self._attempts)
