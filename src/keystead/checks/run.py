"""Run checks: each target once, a few at a time, each within `checks.timeout`.

A provider check sends the smallest request with one key of the pool pinned (no other key is
tried, no key state changes: the same call as `providers test`, control/probe.py, whose words
for failures it reuses). A route check goes through the router, as a client's request would:
the route's deployments, retries and fallbacks, breakers included.

Each check's tokens and cost are written to the usage ledger as feature `synthetic-check`,
with no key and no team, so finance sees them and no budget is charged. The latest result per
target is kept on the runtime (`runtime.checks`) for the metrics, as long as the config has the
target.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from keystead.checks.probe import body, endpoint_for, is_embedding_model, provider_model
from keystead.checks.ratelimit import answer_limits, rate_limit_headers
from keystead.checks.result import CheckResult
from keystead.checks.targets import Target, every_name, select
from keystead.control.probe import failure, refusal
from keystead.errors import GatewayError, UpstreamTimeout, UpstreamUnreachable
from keystead.providers.base import Endpoint, Provider
from keystead.routing.router import TierFailed
from keystead.state.records import UsageRecord
from keystead.usage.extract import read_answer

if TYPE_CHECKING:
    from keystead.config.checks import ChecksConfig
    from keystead.routing.table import Deployment, Route
    from keystead.runtime import Runtime
    from keystead.usage.prices import TokenUsage

__all__ = ["FEATURE", "CheckRunner"]

FEATURE = "synthetic-check"  # the ledger's feature of every check


class CheckRunner:
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    async def run(self, only_providers: Sequence[str] = (),
                  only_routes: Sequence[str] = ()) -> list[CheckResult]:
        """Check the chosen targets (see targets.select); results in target order."""
        config = self.rt.config.checks
        targets = select(self.rt.providers, self.rt.routes, config, only_providers, only_routes)
        gate = asyncio.Semaphore(config.concurrency)

        async def one(target: Target) -> CheckResult:
            async with gate:
                return await self.check(target, config)

        results = list(await asyncio.gather(*(one(t) for t in targets)))
        latest = self.rt.checks
        for result in results:
            latest[result.target] = result
        # A provider, key or route a reload removed keeps no result: its gauges would stay
        # (a failing one would page forever, a passing one would age into a stale alert).
        for gone in latest.keys() - every_name(self.rt.providers, self.rt.routes):
            del latest[gone]
        return results

    async def check(self, target: Target, config: ChecksConfig) -> CheckResult:
        if target.route is not None:
            return await self._route(target.route.name, target.route, config)
        assert target.provider is not None
        return await self._provider(target, target.provider, config)

    async def _provider(self, target: Target, provider: Provider,
                        config: ChecksConfig) -> CheckResult:
        model = provider_model(provider)
        endpoint = endpoint_for(provider, model)
        payload = body(endpoint, model, provider.type, config.max_tokens) if model else None
        at, started = time.time(), time.perf_counter()
        try:
            async with asyncio.timeout(config.timeout_s):
                response = await provider.send(endpoint, model or "", payload, stream=False,
                                               key=target.key)
                answer = await response.read()
        except Exception as exc:  # what kept the call from an answer is the finding
            return _failed(target, at, started, exc, config.timeout_s, provider)
        latency = time.perf_counter() - started
        status, limits = response.status, answer_limits(response)
        if status >= 400:
            return CheckResult(target.name, "provider", False, status, f"http_{status}",
                               refusal(status, answer, provider), latency, at,
                               model=model, rate_limits=limits)
        served, usage = model, None
        if endpoint is not Endpoint.MODELS:
            parsed = read_answer(answer)
            if parsed is None:
                return CheckResult(target.name, "provider", False, status, "malformed",
                                   f"{provider.name} answered {status} with a body that is "
                                   "not an answer", latency, at, model=model, rate_limits=limits)
            usage, served = parsed[0], parsed[1] or model
        cost = self._record(at, latency, endpoint, status, provider, model, served, usage, None)
        return CheckResult(target.name, "provider", True, status, None, "ok", latency, at,
                           model=served, rate_limits=limits, cost_usd=cost)

    async def _route(self, name: str, route: Route, config: ChecksConfig) -> CheckResult:
        deployments = route.all_deployments()
        embedding = bool(deployments) and all(is_embedding_model(d.model) for d in deployments)
        endpoint = Endpoint.EMBEDDINGS if embedding else Endpoint.CHAT

        def body_for(deployment: Deployment) -> bytes:
            return body(endpoint, deployment.model, deployment.provider.type, config.max_tokens)

        target = f"route:{name}"
        at, started = time.time(), time.perf_counter()
        try:
            async with asyncio.timeout(config.timeout_s):
                served = await self.rt.router.call(route, endpoint, body_for, stream=False,
                                                   prompt_tokens=1, tokens=1 + config.max_tokens)
        except TierFailed as failed:
            return _tier_failed(target, at, started, failed,
                                self.rt.routes.problems.get(name))
        except TimeoutError:
            return CheckResult(target, "route", False, None, "timeout",
                               f"timeout: no answer within {config.timeout_s:g} s",
                               time.perf_counter() - started, at)
        except GatewayError as exc:
            return CheckResult(target, "route", False, None, exc.code or type(exc).__name__,
                               exc.message, time.perf_counter() - started, at)
        latency = time.perf_counter() - started
        upstream = served.upstream
        deployment = served.deployment
        model = served.model or deployment.model
        cost = self._record(at, latency, endpoint, upstream.status, deployment.provider,
                            deployment.model, model, served.usage, name)
        return CheckResult(target, "route", True, upstream.status, None, "ok", latency, at,
                           model=model, deployment=deployment.id,
                           rate_limits=answer_limits(upstream), cost_usd=cost)

    def _record(self, at: float, latency: float, endpoint: Endpoint, status: int,
                provider: Provider, requested: str | None, served: str | None,
                usage: TokenUsage | None, route: str | None) -> Decimal:
        """The check's cost, written to the usage ledger unless `checks.record_cost` is off."""
        if usage is None:
            return Decimal(0)
        cost = self.rt.prices.cost(provider.type, served or requested or "", usage).usd
        if self.rt.config.checks.record_cost:
            self.rt.ledger.record(UsageRecord(
                request_id=f"check_{secrets.token_hex(12)}", ts=at, endpoint=endpoint.value,
                status=status, feature=FEATURE, route=route, model_requested=requested,
                model_served=(served or "")[:256] or None, provider=provider.name,
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens, cost_usd=cost,
                latency_ms=round(latency * 1000, 3)))
        return cost


def _failed(target: Target, at: float, started: float, exc: Exception, timeout_s: float,
            provider: Provider) -> CheckResult:
    latency = time.perf_counter() - started
    if isinstance(exc, TimeoutError):
        return CheckResult(target.name, "provider", False, None, "timeout",
                           f"timeout: no answer within {timeout_s:g} s", latency, at)
    error = ("timeout" if isinstance(exc, UpstreamTimeout) else
             "unreachable" if isinstance(exc, UpstreamUnreachable) else
             getattr(exc, "code", None) or type(exc).__name__)
    return CheckResult(target.name, "provider", False, None, str(error)[:64],
                       failure(exc, provider), latency, at)


def _tier_failed(target: str, at: float, started: float, failed: TierFailed,
                 problem: str | None) -> CheckResult:
    latency = time.perf_counter() - started
    outcome = failed.attempts[-1].outcome if failed.attempts else "unavailable"
    response = failed.response
    status: int | None = None
    limits: Mapping[str, str] = {}
    deployment = failed.attempts[-1].deployment if failed.attempts else None
    if response is not None:
        status, limits = response[0], rate_limit_headers(response[1])
        detail = f"HTTP {status} from {response[3].id}"
    elif failed.error is not None:
        detail = failed.error.message
    else:
        detail = problem or "no deployment could take the request (breakers open, or full)"
    tries = len(failed.attempts)
    if tries > 1:
        detail += f" (after {tries} attempts)"
    return CheckResult(target, "route", False, status, outcome, detail, latency, at,
                       deployment=deployment, rate_limits=limits)
