"""A provider's keys: several of them spread the load, and one the provider refuses is taken out.

`Provider.send` asks the pool for a key per request (`pick`, round-robin over the active keys)
and tells it what the provider answered:

- **401**: the key is wrong. It is taken out of rotation (`disabled`) and the same request is
  sent again at once with the next usable key: the provider did no work, so this is safe. Only
  when no usable key is left does the caller see the 401.
- **403**: a 403 is often about the request, not the key (a model the key's project may not
  use, a region, a network rule), so what the answer says decides (`classify_403`):
  - the provider says the key itself is refused (Google's `CONSUMER_SUSPENDED`,
    `API_KEY_SERVICE_BLOCKED`, `API_KEY_IP_ADDRESS_BLOCKED`, `API_KEY_HTTP_REFERRER_BLOCKED`,
    a key "reported as leaked"): out at once, as after a 401;
  - it is about where the gateway calls from (OpenAI's `unsupported_country_region_territory`,
    Azure's "Virtual Network/Firewall rules" and private-endpoint refusals, Anthropic's edge
    "Request not allowed"): every key would get the same answer, so no other key is tried and
    nothing changes;
  - anything else (OpenAI's 403 `model_not_found` "Project ... does not have access to model",
    Anthropic's `permission_error`): the key stays in and the same request goes to the next key
    not yet tried. If another key serves it, the keys that refused it get a fault (`faulted`);
    a key with `FAULTS_TO_DISABLE` faults within `FAULT_WINDOW_S` is taken out. If every key
    refuses, the request was the problem: the client gets the 403 and no key changes. A client
    cannot disable a key by asking for models nobody may use.
- **429**: the key cools down for the provider's `retry-after-ms` / `retry-after` (capped at
  `MAX_COOL_S`), so the next requests go to the other keys; the 429 itself is returned as is
  (retrying is the data plane's business).
- **success with a disabled key** (only sent when every key is out): a key taken out after a
  401 is back. One taken out after a 403 stays out (bringing it back on one success would flap);
  an operator puts it back.

When no key is active the pool still hands one out (the cooling key that is free soonest,
else the disabled keys in turn), so a provider whose keys are all out answers what it answers
(401 → `upstream_auth_failed`), as a one-key provider always did, and comes back by itself
when a key works again.

A change of state that matters (disabled, back) is logged at WARNING with the provider, the
key's label (`#2`) and fingerprint (a sha256 prefix, never the key) and reported to the
`report` callback: the runtime records an audit event and shares the state with the other
gateways (the pool itself knows no store). All of this runs on one event loop: no locks.
Picking a key costs an index and a counter; the clock is read only while a key cools down.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["ACTIVE", "COOLING", "DEFAULT_COOL_S", "DISABLED", "FAULTS_TO_DISABLE",
           "FAULT_WINDOW_S", "FORBIDDEN_KEY", "FORBIDDEN_PLACE", "FORBIDDEN_REQUEST",
           "MAX_COOL_S", "KeyChange", "KeyPool", "PoolKey", "classify_403", "fingerprint",
           "normalize_label", "retry_after_s"]

log = logging.getLogger("keystead.providers")

ACTIVE = "active"
COOLING = "cooling"
DISABLED = "disabled"
DEFAULT_COOL_S = 5.0  # a 429 without retry-after
MAX_COOL_S = 60.0
_FINGERPRINT_CHARS = 12
_REFUSED_401 = "HTTP 401"
# A key that refused (403) requests other keys of the pool served, this often this recently, is
# taken out (see the module docstring).
FAULTS_TO_DISABLE = 3
FAULT_WINDOW_S = 600.0

# What a 403 is about (classify_403).
FORBIDDEN_KEY = "key"  # the key itself is refused: out at once
FORBIDDEN_PLACE = "place"  # where the gateway calls from: every key gets the same
FORBIDDEN_REQUEST = "request"  # this request (its model, a resource): try another key
# Words of providers' 403 bodies, as they answer them (docs/providers.md quotes them).
_KEY_403 = (b"CONSUMER_SUSPENDED", b"API_KEY_SERVICE_BLOCKED", b"API_KEY_IP_ADDRESS_BLOCKED",
            b"API_KEY_HTTP_REFERRER_BLOCKED", b"reported as leaked")
_PLACE_403 = (b"unsupported_country_region_territory", b"Virtual Network",
              b"Public access is disabled", b"private endpoint", b"Request not allowed")


def classify_403(body: bytes) -> str:
    """What a provider's 403 answer is about: FORBIDDEN_KEY, FORBIDDEN_PLACE or
    FORBIDDEN_REQUEST (the default: a 403 is taken to be about the request unless it says
    otherwise)."""
    if any(word in body for word in _KEY_403):
        return FORBIDDEN_KEY
    if any(word in body for word in _PLACE_403):
        return FORBIDDEN_PLACE
    return FORBIDDEN_REQUEST


def fingerprint(secret: str) -> str:
    """A short, stable id of a key that reveals nothing of it: the first 12 hex characters of
    its sha256 (`printf %s "$KEY" | sha256sum | cut -c1-12` gives the same)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:_FINGERPRINT_CHARS]


def normalize_label(label: str) -> str:
    """`2`, `#2` and ` #2 ` are the same label: `#2`."""
    text = label.strip().lstrip("#")
    return f"#{text}"


def retry_after_s(headers: Mapping[str, str], default: float = DEFAULT_COOL_S) -> float:
    """How long a 429 asks to wait: `retry-after-ms`, else `retry-after` (seconds or an HTTP
    date), else `default`; capped at MAX_COOL_S."""
    seconds: float | None = None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000
        except ValueError:
            seconds = None
    if seconds is None and (value := headers.get("retry-after")) is not None:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                seconds = None
    if seconds is None or math.isnan(seconds):
        seconds = default
    return max(0.0, min(seconds, MAX_COOL_S))


class PoolKey:
    """One key of a pool and its state. `since` is wall-clock time of the last change,
    `until` the monotonic end of a cool-down."""

    __slots__ = ("faults", "fingerprint", "label", "reason", "secret", "since", "state",
                 "until")

    def __init__(self, label: str, secret: str, *, fingerprint_: str | None = None):
        self.label = label
        self.secret = secret
        self.fingerprint = fingerprint_ or fingerprint(secret)
        self.state = ACTIVE
        self.since: float | None = None
        self.reason: str | None = None
        self.until = 0.0
        self.faults: list[float] = []  # monotonic times of 403s another key then served

    def __repr__(self) -> str:  # never the key
        return f"PoolKey({self.label} {self.fingerprint} {self.state})"


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A key taken out (`state` disabled) or back (`state` active), as the pool reports it."""

    provider: str
    label: str
    fingerprint: str
    state: str
    reason: str
    since: float
    status: int | None = None  # the provider's answer that caused it


Reporter = Callable[[KeyChange], None]


class KeyPool:
    __slots__ = ("_cooling", "_next", "_ready", "_report", "_wake_at", "keys", "provider")

    def __init__(self, provider: str, keys: Iterable[PoolKey] = (),
                 report: Reporter | None = None):
        self.provider = provider
        self.keys: tuple[PoolKey, ...] = tuple(keys)
        self._report = report
        self._next = 0
        self._ready: tuple[PoolKey, ...] = ()
        self._cooling: tuple[PoolKey, ...] = ()
        self._wake_at = math.inf
        self._rebuild()

    @classmethod
    def of(cls, provider: str, secrets: str | Sequence[str] | None,
           report: Reporter | None = None) -> KeyPool:
        """A pool of `secrets` labelled #1, #2, ... (a single key, or None for no key)."""
        if secrets is None:
            secrets = ()
        elif isinstance(secrets, str):
            secrets = (secrets,)
        return cls(provider, (PoolKey(f"#{i}", s) for i, s in enumerate(secrets, 1)), report)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"KeyPool({self.provider!r}, {list(self.keys)!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(key.secret for key in self.keys)

    @property
    def first(self) -> str | None:
        return self.keys[0].secret if self.keys else None

    def get(self, label: str) -> PoolKey | None:
        label = normalize_label(label)
        return next((key for key in self.keys if key.label == label), None)

    def by_fingerprint(self, value: str) -> PoolKey | None:
        return next((key for key in self.keys if key.fingerprint == value), None)

    # --- the request path ---------------------------------------------------------------------

    def pick(self) -> PoolKey | None:
        """The key for the next request: round-robin over the active keys. None: no key."""
        if self._cooling and time.monotonic() >= self._wake_at:
            self._wake()
        ready = self._ready
        if ready:
            i = self._next
            if i >= len(ready):
                i = 0
            self._next = i + 1
            return ready[i]
        return self._fallback()

    def refused(self, key: PoolKey, status: int, *, reason: str | None = None,
                exclude: Collection[PoolKey] = ()) -> PoolKey | None:
        """The provider refused `key` (a 401, or a 403 that names the key): take it out (once:
        requests that were under way with it all end up here). Returns the key to send the same
        request again with (none of `exclude`), or None when no usable key is left."""
        if key.state != DISABLED:
            self._take_out(key, status, reason or (_REFUSED_401 if status == 401
                                                   else f"HTTP {status}"))
        # Only a usable key: offering a disabled one here would use up its turn as a probe.
        return self.another((key, *exclude))

    def faulted(self, key: PoolKey) -> None:
        """`key` refused (403) a request that another key of the pool then served: a fault. At
        FAULTS_TO_DISABLE faults within FAULT_WINDOW_S the key is taken out."""
        if key.state == DISABLED:
            return
        now = time.monotonic()
        key.faults = [t for t in key.faults if now - t < FAULT_WINDOW_S]
        key.faults.append(now)
        if len(key.faults) >= FAULTS_TO_DISABLE:
            key.faults = []
            self._take_out(key, 403, f"HTTP 403: refused {FAULTS_TO_DISABLE} requests in "
                                     f"{FAULT_WINDOW_S / 60:g} min that other keys served")

    def another(self, exclude: Collection[PoolKey] = ()) -> PoolKey | None:
        """A usable key (active, else the cooling one free soonest) that is not in `exclude`:
        the key to send a refused request again with. None: no such key."""
        if self._cooling and time.monotonic() >= self._wake_at:
            self._wake()
        ready = self._ready
        for step in range(len(ready)):
            i = (self._next + step) % len(ready)
            if ready[i] not in exclude:
                self._next = i + 1
                return ready[i]
        cooling = [key for key in self._cooling if key not in exclude]
        return min(cooling, key=lambda key: key.until) if cooling else None

    def limited(self, key: PoolKey, headers: Mapping[str, str]) -> None:
        """The provider rate-limited `key` (429): the next requests prefer the other keys."""
        if key.state == DISABLED:
            return
        seconds = retry_after_s(headers)
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        if key.state == COOLING and key.until >= until:
            return
        key.until = until
        self._set(key, COOLING, f"HTTP 429, retry after {seconds:g} s")
        log.info("provider %s: key %s (fingerprint %s) rate-limited; the other keys go first for "
                 "%g s", self.provider, key.label, key.fingerprint, seconds)

    def answered(self, key: PoolKey, status: int) -> None:
        """`key` was served (status < 400), and it was out when the request was sent (every
        key was: `pick` offered it anyway). A request sent before the key went out proves
        nothing: the caller only asks for the former."""
        if key.state == DISABLED and key.reason == _REFUSED_401:
            self._set(key, ACTIVE, f"answered again (HTTP {status})")
            log.warning("provider %s: key %s (fingerprint %s) answered again; back in rotation",
                        self.provider, key.label, key.fingerprint)
            self._emit(key, status)

    # --- control ------------------------------------------------------------------------------

    def restore(self, key: PoolKey, state: str, *, since: float | None = None,
                reason: str | None = None) -> None:
        """Set `key`'s state without a report: an operator's action (enable-key), or a state
        another gateway recorded."""
        if state == COOLING:
            raise ValueError("a cool-down is only ever the provider's (a 429)")
        key.faults = []
        self._set(key, state, reason, since)

    def view(self) -> list[dict[str, Any]]:
        """Each key as the admin API shows it: label, fingerprint, state, since, until, reason."""
        if self._cooling and time.monotonic() >= self._wake_at:
            self._wake()
        now_mono, now = time.monotonic(), time.time()
        return [{
            "label": key.label, "fingerprint": key.fingerprint, "state": key.state,
            "since": _iso(key.since), "reason": key.reason,
            "until": _iso(now + key.until - now_mono) if key.state == COOLING else None,
        } for key in self.keys]

    # --- inside -------------------------------------------------------------------------------

    def _set(self, key: PoolKey, state: str, reason: str | None,
             since: float | None = None) -> None:
        key.state = {ACTIVE: ACTIVE, COOLING: COOLING, DISABLED: DISABLED}[state]
        key.since = time.time() if since is None else since
        key.reason = reason
        self._rebuild()

    def _take_out(self, key: PoolKey, status: int, reason: str) -> None:
        self._set(key, DISABLED, reason)
        left = len(self._ready) + len(self._cooling)
        why = "" if reason == f"HTTP {status}" else f"{reason}; "
        log.warning("provider %s: key %s (fingerprint %s) refused with HTTP %d; taken out of "
                    "rotation (%s%s)", self.provider, key.label, key.fingerprint, status, why,
                    f"{left} of {len(self.keys)} keys left" if left else
                    "no key left: requests fail with upstream_auth_failed until a key is "
                    "replaced or re-enabled")
        self._emit(key, status)

    def _emit(self, key: PoolKey, status: int | None) -> None:
        if self._report is None:
            return
        change = KeyChange(self.provider, key.label, key.fingerprint, key.state,
                           key.reason or "", key.since or time.time(), status)
        try:
            self._report(change)
        except Exception:  # reporting must never fail the request that noticed
            log.exception("provider %s: reporting the change of key %s failed", self.provider,
                          key.label)

    def _rebuild(self) -> None:
        self._ready = tuple(key for key in self.keys if key.state == ACTIVE)
        self._cooling = tuple(key for key in self.keys if key.state == COOLING)
        self._wake_at = min((key.until for key in self._cooling), default=math.inf)

    def _wake(self) -> None:
        now, wall = time.monotonic(), time.time()
        for key in self._cooling:
            if key.until <= now:
                key.state, key.since, key.reason = ACTIVE, wall, None
        self._rebuild()

    def _fallback(self) -> PoolKey | None:
        if self._cooling:
            return min(self._cooling, key=lambda key: key.until)
        keys = self.keys
        if not keys:
            return None
        i = self._next % len(keys)
        self._next = i + 1
        return keys[i]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
