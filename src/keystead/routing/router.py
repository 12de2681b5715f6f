"""The attempt loop: one request, tried on a route's deployments, then on its fallbacks.

    for each tier (the route, then each fallback):
        up to `retry.attempts` attempts, each on a deployment the balancer picks
        (an untried one first; an open breaker, a full or too-small deployment is skipped)
    retry on: 429, 408, 409, 5xx (Anthropic's 529 too), connect errors, resets, timeouts, a
        malformed 200, a stream whose first event is not one or is an error
    fall back at once on: a context-window overflow, an answer invalid for its schema
    never retry: any other 4xx (a retry cannot fix it)

Waits: none when the next attempt goes to another deployment; otherwise decorrelated jitter,
or the provider's Retry-After when longer (up to `max_retry_after_s`; a longer one moves on).
A stream is retried only until its first event: the loop reads that event before the gateway
answers the client, so everything up to it can still be thrown away.

Clock, sleep and randomness are injected: tests check exact schedules.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keystead.errors import GatewayError, UpstreamError, UpstreamTimeout
from keystead.providers.base import Endpoint
from keystead.providers.transport import UpstreamResponse
from keystead.routing.attempt import AttemptFailed, classify, falls_back, first_event, malformed
from keystead.routing.backoff import Backoff
from keystead.routing.balance import choose
from keystead.routing.breaker import Breakers
from keystead.routing.table import Deployment, Route
from keystead.state.counters import Counters, CountersUnavailable
from keystead.usage.extract import read_answer
from keystead.usage.prices import TokenUsage

if TYPE_CHECKING:
    from keystead.tracing.attempt_span import AttemptTracer

__all__ = ["AttemptLog", "Judge", "Router", "Served", "TierFailed"]

log = logging.getLogger("keystead.routing")

@dataclass(slots=True)
class AttemptLog:
    deployment: str
    # "ok", "http_429", "timeout", "unreachable", "malformed", "stream_error", "context",
    # "schema"
    outcome: str
    ms: float
    wait_s: float = 0.0  # waited before this attempt


@dataclass(slots=True)
class Served:
    """A usable answer: hand it to the client."""

    deployment: Deployment
    tier: Route
    upstream: UpstreamResponse
    body: bytes | None = None  # a non-streamed answer, read whole
    chunks: AsyncIterator[bytes] | None = None  # a stream, after its first chunk
    first: bytes = b""
    attempts: list[AttemptLog] = field(default_factory=list)
    schema_error: str | None = None  # the answer is invalid for its schema (policy "pass")
    repaired: bool = False
    usage: TokenUsage | None = None  # of a non-streamed answer, read with its validity
    model: str | None = None  # the model the answer names


class TierFailed(Exception):
    """Every attempt failed. `final` is what the client gets: the last upstream answer
    (status, headers, body) or the last gateway error."""

    def __init__(self, attempts: list[AttemptLog], error: GatewayError | None,
                 response: tuple[int, Mapping[str, str], bytes, Deployment] | None,
                 client_error: bool = False):
        super().__init__("every attempt failed")
        self.attempts = attempts
        self.error = error
        self.response = response
        # The request itself was refused (a 4xx a retry cannot fix, a context overflow with
        # nowhere bigger to go): no degraded reply may hide that from the client.
        self.client_error = client_error


class Judge:
    """Checks a non-streamed answer against what the request asked for (structured output).
    The default judges nothing."""

    def invalid(self, body: bytes) -> str | None:
        """Why `body` does not satisfy the request's response_format; None when it does."""
        return None

    def repair(self, sent: bytes, body: bytes, error: str) -> bytes | None:
        """A request body asking again, quoting `error`; None when it cannot be built."""
        return None


class Router:
    def __init__(self, breakers: Breakers, *, counters: Counters | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.breakers = breakers
        self._counters = counters  # deployments' quotas (rpm/tpm); None: not enforced
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._cool_until: dict[str, float] = {}  # deployment -> monotonic time (after a 429)
        self.tracer: AttemptTracer | None = None  # tracing on: a span per attempt

    async def call(self, route: Route, endpoint: Endpoint,
                   body_for: Callable[[Deployment], bytes], *, stream: bool, prompt_tokens: int,
                   tokens: int = 0, judge: Judge | None = None, on_invalid: str = "repair",
                   on_discarded: Callable[[Deployment, bytes], None] | None = None) -> Served:
        """Try `route` and its fallbacks until one answers usably. Raises TierFailed.

        `judge` checks non-streamed answers; on an invalid one, `on_invalid` says: "repair"
        (ask once more, then fall back), "fallback" (the next tier at once) or "pass"."""
        if route.config is None and route.retry.attempts == 1 and judge is None:
            return await self._once(route, endpoint, body_for, stream)
        triggers = route.config.fallback_on if route.config is not None else ()
        # Breakers guard the deployments of routes (aliases). A call naming a model has no
        # other deployment to go to: it reaches the provider and gets its answer.
        breakers = self.breakers if route.config is not None else None
        attempts: list[AttemptLog] = []
        deadline = None
        if route.retry.total_timeout_s is not None:
            deadline = self._clock() + route.retry.total_timeout_s
        last: AttemptFailed | None = None
        tiers = route.tiers()
        for tier_index, tier in enumerate(tiers):
            if tier_index and last is not None and not falls_back(last, triggers):
                break
            has_next_tier = tier_index + 1 < len(tiers)
            policy = tier.retry
            backoff = Backoff(policy.base_ms / 1000, policy.cap_ms / 1000, self._rng)
            tried: set[str] = set()
            previous: Deployment | None = None
            wait = 0.0
            repaired = False
            override: bytes | None = None  # a repair request replaces the body once
            repair_on: Deployment | None = None  # ...and goes to the deployment that erred
            attempt = 0
            while attempt < policy.attempts:
                deployment = repair_on or await self._pick(tier, endpoint, tried, prompt_tokens,
                                                           breakers, tokens)
                repair_on = None
                if deployment is None:
                    break
                if previous is not None and deployment is previous:
                    # The same deployment again: wait, as it asked or by the backoff.
                    wait = backoff.next_wait()
                    if last is not None and last.retry_after is not None:
                        if last.retry_after > policy.max_retry_after_s:
                            break  # it wants a longer pause than the client should wait
                        wait = max(wait, last.retry_after)
                    if deadline is not None and self._clock() + wait >= deadline:
                        break
                    if wait > 0:
                        await self._sleep(wait)
                else:
                    wait = 0.0
                attempt += 1
                tried.add(deployment.id)
                previous = deployment
                started = self._clock()
                body = override if override is not None else body_for(deployment)
                override = None
                deployment.in_flight += 1
                try:
                    call = self._attempt(tier, deployment, endpoint, body, stream,
                                         policy.attempt_timeout_s, deadline)
                    if self.tracer is not None:
                        call = self.tracer.attempt(call, endpoint, deployment,
                                                   len(attempts) + 1, wait)
                    served = await call
                except AttemptFailed as retry:
                    deployment.in_flight -= 1
                    attempts.append(AttemptLog(deployment.id, retry.outcome,
                                               (self._clock() - started) * 1000, wait))
                    last = retry
                    await self._failed(deployment, retry, policy.max_retry_after_s, breakers)
                    if retry.then != "retry":
                        break
                    continue
                except BaseException:
                    deployment.in_flight -= 1
                    raise
                ms = (self._clock() - started) * 1000
                deployment.observe_latency(ms)
                if breakers is not None:
                    await breakers.success(deployment.id)
                error = judge.invalid(served.body) if judge and served.body is not None else None
                if error is None:
                    attempts.append(AttemptLog(deployment.id, "ok", ms, wait))
                    served.attempts = attempts
                    served.repaired = repaired
                    return served
                # A billed answer that breaks its schema: repair once, else fall back, else pass.
                attempts.append(AttemptLog(deployment.id, "schema", ms, wait))
                if on_invalid == "repair" and not repaired and judge is not None \
                        and served.body is not None:
                    override = judge.repair(body, served.body, error)
                can_fall_back = on_invalid != "pass" and "schema" in triggers and has_next_tier
                if override is not None or can_fall_back:
                    deployment.in_flight -= 1
                    served.upstream.release()
                    if on_discarded is not None and served.body is not None:
                        on_discarded(deployment, served.body)
                    if override is not None:
                        repaired = True
                        repair_on = deployment  # it knows its own answer best
                        previous = None  # no backoff: nothing failed
                        attempt -= 1  # a repair is not a retry
                        continue
                    last = AttemptFailed("schema", breaker=False, then="fallback")
                    break
                served.attempts = attempts
                served.schema_error = error
                served.repaired = repaired
                return served
        raise TierFailed(attempts, last.error if last else None,
                         _with_deployment(last, attempts, route) if last else None,
                         client_error=last is not None and (
                             last.then == "stop" or last.outcome == "context"))

    async def _once(self, route: Route, endpoint: Endpoint,
                    body_for: Callable[[Deployment], bytes], stream: bool) -> Served:
        """A call naming a model, tried once (the default): no balancing, no breaker, no
        backoff; the same outcomes as the loop's first attempt."""
        deployment = route.deployments[0]
        started = self._clock()
        body = body_for(deployment)  # (a body it refuses raises before anything is counted)
        deployment.in_flight += 1
        try:
            call = self._attempt(route, deployment, endpoint, body, stream,
                                 route.retry.attempt_timeout_s, None)
            if self.tracer is not None:
                call = self.tracer.attempt(call, endpoint, deployment, 1, 0.0)
            served = await call
        except AttemptFailed as retry:
            deployment.in_flight -= 1
            attempts = [AttemptLog(deployment.id, retry.outcome,
                                   (self._clock() - started) * 1000)]
            raise TierFailed(attempts, retry.error, None if retry.response is None
                             else (*retry.response, deployment),
                             client_error=retry.then == "stop") from None
        except BaseException:
            deployment.in_flight -= 1
            raise
        served.attempts = [AttemptLog(deployment.id, "ok", (self._clock() - started) * 1000)]
        return served

    async def _pick(self, tier: Route, endpoint: Endpoint, tried: set[str], prompt_tokens: int,
                    breakers: Breakers | None, tokens: int = 0) -> Deployment | None:
        now = self._clock()
        candidates = []
        for deployment in tier.deployments:
            if deployment.full or not deployment.provider.capabilities.supports(endpoint):
                continue
            if deployment.context_window is not None \
                    and prompt_tokens > deployment.context_window:
                continue
            cool = self._cool_until.get(deployment.id)
            if cool is not None and cool > now and deployment.id not in tried:
                continue
            candidates.append(deployment)
        while candidates:
            pick = choose(candidates, tier.strategy, tried, self._rng)
            if pick is None:
                return None
            if (breakers is None or await breakers.allow(pick.id, probe_ttl_s=30.0)) \
                    and await self._within_quota(pick, tokens):
                return pick
            candidates.remove(pick)
        return None

    async def _within_quota(self, deployment: Deployment, tokens: int) -> bool:
        """Charge the deployment's rpm/tpm; False (skip it) when it is at its quota. Counted
        for every replica; when the counters are out of reach the quota is not enforced (it
        protects a provider's quota, and the provider enforces that itself)."""
        if self._counters is None or (deployment.rpm is None and deployment.tpm is None):
            return True
        try:
            admission = await self._counters.admit("", deployment.quota(tokens), (), 0.0)
        except CountersUnavailable:
            return True
        return admission.allowed

    async def _failed(self, deployment: Deployment, retry: AttemptFailed, cap_s: float,
                      breakers: Breakers | None) -> None:
        if breakers is None:
            return
        if retry.retry_after is not None:
            self._cool_until[deployment.id] = self._clock() + min(retry.retry_after, cap_s)
        if retry.breaker:
            await breakers.failure(deployment.id)

    async def _attempt(self, tier: Route, deployment: Deployment, endpoint: Endpoint,
                       body: bytes, stream: bool, attempt_timeout: float | None,
                       deadline: float | None) -> Served:
        timeout = attempt_timeout
        if deadline is not None:
            left = deadline - self._clock()
            timeout = left if timeout is None else min(timeout, left)
        upstream: UpstreamResponse | None = None
        try:
            if timeout is None:  # no deadline: no timer to arm (most calls)
                upstream = await deployment.provider.send(endpoint, deployment.model, body,
                                                          stream=stream)
                served = await self._first_byte(tier, deployment, upstream, stream)
            else:
                async with asyncio.timeout(timeout):
                    upstream = await deployment.provider.send(endpoint, deployment.model, body,
                                                              stream=stream)
                    served = await self._first_byte(tier, deployment, upstream, stream)
            if served is not None:
                return served
            # A non-streamed body is read outside the first-byte deadline: the answer has
            # started, and a long one takes its time.
            payload = await upstream.read()
        except AttemptFailed:
            raise
        except asyncio.CancelledError:  # the client left: stop the provider's work too
            if upstream is not None:
                upstream.abort()
            raise
        except TimeoutError:
            if upstream is not None:
                upstream.abort()
            raise AttemptFailed("timeout", breaker=True, error=UpstreamTimeout(
                f"Provider {deployment.provider.name} sent no first byte in time.",
                hint="Raise retry.attempt_timeout_s for this route if its answers are slow "
                     "to start.")) from None
        except StopAsyncIteration:
            assert upstream is not None
            upstream.abort()
            raise AttemptFailed("malformed", breaker=True, error=malformed(deployment)) from None
        except UpstreamError as exc:
            if upstream is not None:
                upstream.abort()
            raise AttemptFailed("timeout" if isinstance(exc, UpstreamTimeout) else "unreachable",
                         breaker=True, error=exc) from None
        answer = read_answer(payload)
        if answer is None:
            raise AttemptFailed("malformed", breaker=True, error=malformed(deployment))
        return Served(deployment, tier, upstream, body=payload, usage=answer[0], model=answer[1])

    @staticmethod
    async def _first_byte(tier: Route, deployment: Deployment, upstream: UpstreamResponse,
                          stream: bool) -> Served | None:
        """An error status is a failed attempt; a stream is served once its first event is
        in and is one (not an error, not something else). None: a non-streamed answer whose
        body is still to be read."""
        status = upstream.status
        if status >= 400:
            payload = await upstream.read()
            raise classify(status, upstream.headers, payload)
        if not stream:
            return None
        chunks = aiter(upstream.iter_chunks())
        first = await first_event(chunks, deployment, upstream)
        return Served(deployment, tier, upstream, chunks=chunks, first=first)


def _with_deployment(last: AttemptFailed, attempts: list[AttemptLog], route: Route,
                     ) -> tuple[int, Mapping[str, str], bytes, Deployment] | None:
    if last.response is None:
        return None
    served_by = attempts[-1].deployment if attempts else ""
    deployment = next((d for d in route.all_deployments() if d.id == served_by), None)
    if deployment is None:
        return None
    return (*last.response, deployment)
