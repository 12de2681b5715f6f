"""What a light command imports: it must not start loading the data plane.

Each case runs the real CLI in a fresh interpreter (a subprocess: this test process has imported
everything already) and reads back which modules it loaded. No timing is asserted (that is
bench/cli.py's job); a module list is exact, a time on a shared machine is not. A command that
starts importing the request line, the serving runtime or the HTTP client fails here, naming the
module and the chain that pulled it in (`python -X importtime -m keystead ...` shows it).
"""

from __future__ import annotations

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
