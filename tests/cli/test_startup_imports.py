"""What a light command imports: it must not start loading the data plane.

Each case runs the real CLI in a fresh interpreter (a subprocess: this test process has imported
everything already) and reads back which modules it loaded. No timing is asserted (that is
bench/cli.py's job); a module list is exact, a time on a shared machine is not. A command that
starts importing the request line, the serving runtime or the HTTP client fails here, naming the
module and the chain that pulled it in (`python -X importtime -m keystead ...` shows it).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.helpers import ADMIN_TOKEN, Project, Remote

# The data plane and what only it needs: none of it serves a command on keys, teams, usage,
# events or incidents.
DATA_PLANE = ("aiohttp", "uvicorn", "uvloop", "httptools", "tiktoken", "genai_prices", "redis",
              "fastapi", "starlette", "alembic", "keystead.server", "keystead.pipeline",
              "keystead.runtime", "keystead.routing", "keystead.cache", "keystead.mocks",
              "keystead.providers.base", "keystead.providers.registry", "keystead.usage")
# The secret detectors: a command that records what an operator typed (an event's detail, a
# reason) masks secrets in it with them; a command that only reads never loads them.
DETECTORS = ("keystead.guard", "keystead.scan")
# PostgreSQL's driver and dialect: a store on SQLite never needs them.
POSTGRES = ("asyncpg", "sqlalchemy.dialects.postgresql")
# What neither `--help` nor a --server call needs either: the config's models and the store.
LOCAL_STACK = ("pydantic", "sqlalchemy", "aiosqlite", "asyncpg", "yaml", "cryptography",
               "keystead.config.model", "keystead.state.sql_store", "keystead.control",
               "keystead.vault")

_PROBE = """
import json, sys
from keystead.cli.main import cli
try:
    cli.main(sys.argv[2:], prog_name="keystead")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def _modules(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
             stdin: str = "", codes: tuple[int | None, ...] = (0, None)) -> list[str]:
    report = tmp_path / "modules.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEYSTEAD_")}
    done = subprocess.run([sys.executable, "-c", _PROBE, str(report), *args], input=stdin,
                          capture_output=True, text=True, env={**environ, **(env or {})},
                          cwd=tmp_path, timeout=60, check=False)
    assert report.exists(), done.stderr
    result = json.loads(report.read_text())
    assert result["code"] in codes, f"{args}: {done.stdout}{done.stderr}"
    return list(result["modules"])


def _loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_help_imports_no_command_module_and_no_config(tmp_path: Path) -> None:
    modules = _modules(tmp_path, "--help")
    assert _loaded(modules, DATA_PLANE + LOCAL_STACK) == []
    commands = [m for m in modules if m.startswith("keystead.cli.")]
    assert sorted(commands) == ["keystead.cli.context", "keystead.cli.main"]


@pytest.mark.parametrize("command", [
    ["keys", "list"], ["keys", "show", "prod-pay-api"], ["keys", "create", "prod-pay-api-02"],
    ["keys", "revoke", "prod-pay-api"], ["teams", "list"], ["teams", "show", "payments"],
    ["usage"], ["usage", "--by", "model"], ["events"], ["incident", "prod-pay-api"],
    ["keys", "list", "--due"],
])
def test_embedded_commands_leave_the_data_plane_alone(project: Project, tmp_path: Path,
                                                      command: list[str]) -> None:
    project.create_team("payments")
    project.create_key("prod-pay-api", "--team", "payments")
    modules = _modules(tmp_path, "--config", str(project.config), *command,
                       env={"KEYSTEAD_MASTER_KEY": project.master_key})
    assert _loaded(modules, DATA_PLANE + POSTGRES) == []
    if command[-1] in ("list", "show") or command[0] in ("usage", "events") \
            or command[:2] == ["keys", "show"] or command[:2] == ["teams", "show"]:
        assert _loaded(modules, DETECTORS) == []


def test_embedded_reload_asks_through_the_store_without_the_data_plane(
        project: Project, tmp_path: Path) -> None:
    # No gateway runs here: it asks, waits, finds no answer and exits 1, having loaded nothing
    # of the data plane (it bumps a counter; it reads no provider key).
    project.create_team("payments")  # the store exists (a new one is migrated: alembic)
    modules = _modules(tmp_path, "--config", str(project.config), "reload", "--wait", "0s",
                       env={"KEYSTEAD_MASTER_KEY": project.master_key}, codes=(1,))
    assert _loaded(modules, DATA_PLANE + POSTGRES) == []


@pytest.mark.parametrize("command", [
    ["keys", "list"], ["keys", "show", "prod-pay-api"], ["keys", "create", "prod-pay-api-02"],
    ["keys", "revoke", "prod-pay-api"], ["teams", "list"], ["usage"], ["events"],
    ["incident", "prod-pay-api"],
])
def test_server_commands_need_only_the_standard_library(remote: Remote, tmp_path: Path,
                                                        command: list[str]) -> None:
    remote.ok("keys", "create", "prod-pay-api")
    modules = _modules(tmp_path, "--server", remote.url, *command,
                       env={"KEYSTEAD_ADMIN_TOKEN": ADMIN_TOKEN})
    assert _loaded(modules, DATA_PLANE + LOCAL_STACK) == []


@pytest.mark.parametrize("command", [["providers", "list"], ["routes"], ["check"]])
def test_embedded_runtime_commands_load_no_metrics_or_tracing(project: Project, tmp_path: Path,
                                                              command: list[str]) -> None:
    # They open a runtime (not a serving one): nobody scrapes it, so prometheus-client (about
    # 80 ms of imports) and OpenTelemetry stay unloaded.
    modules = _modules(tmp_path, "--config", str(project.config), *command,
                       env={"KEYSTEAD_MASTER_KEY": project.master_key}, codes=(0, 1, None))
    assert _loaded(modules, ("prometheus_client", "opentelemetry")) == []


# What a serving gateway never loads with the default config (SQLite, tracing off), from its
# start through a stream the upstream cuts short, whose usage it estimates: the tokenizer
# (76-79 MB of tables), migrations (the store exists), the admin API's framework (loaded on the
# first admin call), tracing, Redis, PostgreSQL, and what only some providers or routes need.
SERVE_NEVER = ("tiktoken", "regex", "alembic", "fastapi", "starlette", "opentelemetry",
               "jsonschema", "boto3", "botocore", "redis", "keystead.cli.demo",
               "keystead.cli.demo_runtime", *POSTGRES)

_SERVE_PROBE = """
import atexit, json, sys
report = sys.argv[1]
def dump():
    with open(report, "w") as out:
        json.dump(sorted(sys.modules), out)
atexit.register(dump)
sys.argv = ["keystead", *sys.argv[2:]]
from keystead.cli.main import main
main()
"""


def test_serve_loads_neither_tokenizer_nor_migrations_nor_admin_framework(
        tmp_path: Path) -> None:
    from e2e.harness import (
        free_port,
        http,
        prepare_config,
        run_cli,
        spawn,
        stop,
        wait_for_rows,
        wait_ready,
    )

    config = prepare_config(tmp_path)
    key = json.loads(run_cli("keys", "create", "dev-probe-app", "--json",
                             config=config).stdout)["key"]
    report, log, port = tmp_path / "serve-modules.json", tmp_path / "serve.log", free_port()
    with log.open("ab") as sink:
        proc = spawn([sys.executable, "-c", _SERVE_PROBE, str(report), "--config", str(config),
                      "serve", "--port", str(port)], cwd=tmp_path, stderr=sink)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log)
        chat = {"model": "gpt-4o-mini", "stream": True, "messages": [
            {"role": "user", "content": "A long story [[mock:disconnect_after=3]]"}]}
        with contextlib.suppress(OSError):  # the cut itself
            http("POST", base + "/v1/chat/completions", body=chat,
                 headers={"authorization": f"Bearer {key}"})
        # Its usage was estimated (and written) before the server stops.
        wait_for_rows(tmp_path / "keystead.db", "usage_estimated = 1 AND stream = 1", (), 1)
    finally:
        assert stop(proc) == 0, log.read_text()
    modules = json.loads(report.read_text())
    assert _loaded(modules, SERVE_NEVER) == []
