"""Synthetic checks (P25) and readiness: is every provider key and route answering, and can
this gateway serve?

    result.py       CheckResult (what one check found) and the target names
    targets.py      which targets a run checks (every key of every provider, every route)
    probe.py        the smallest request: endpoint, model and body
    ratelimit.py    the provider's rate-limit headers, bounded and printable
    run.py          CheckRunner: runs them, records their cost, keeps the latest on the runtime
    transitions.py  check.failed / check.recovered events, once per change of state
    schedule.py     `checks.every`: the background run, once per period across replicas
    worker_lease.py `serve --workers N` without Redis: the lock that picks one worker
    readiness.py    GET /readyz: which dependency is down

The CLI (`keystead check`, cli/check.py) and the admin API (`POST /admin/checks`) call
CheckRunner; the server starts the schedule and answers /readyz.
"""

from keystead.checks.result import CheckResult, provider_target, route_target

__all__ = ["CheckResult", "provider_target", "route_target"]
