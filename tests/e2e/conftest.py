"""End-to-end fixtures: one gateway process for the session, and no process left behind."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest

from e2e.harness import (
    CHILDREN,
    Gateway,
    keystead_args,
    prepare_config,
    read_env_file,
    run_cli,
    spawn,
    start_server,
    stop,
    wait_until_key_works,
)


@pytest.fixture(scope="session", autouse=True)
def _kill_leftovers() -> Iterator[None]:
    yield
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("gateway")
    config = prepare_config(directory)
    run_cli("teams", "create", "e2e", "--description", "end-to-end tests", config=config)
    app = json.loads(run_cli("keys", "create", "dev-e2e-app", "--team", "e2e", "--json",
                             config=config).stdout)
    # The second key is created while the server starts (each CLI run costs ~1.5 s of imports);
    # the server's store watcher picks it up.
    restricted_cli = spawn(keystead_args("keys", "create", "dev-e2e-restricted", "--team", "e2e",
                                         "--models", "gpt-4o-mini", "--max-tokens", "50",
                                         "--json", config=config),
                           cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    env = read_env_file(directory / ".env")
    log = directory / "server.log"
    proc, base_url = start_server(config, log)
    out, err = restricted_cli.communicate(timeout=60)
    assert restricted_cli.returncode == 0, err
    restricted = json.loads(out)
    gw = Gateway(dir=directory, config=config, db=directory / "keystead.db", log=log,
                 base_url=base_url, proc=proc, admin_token=env["KEYSTEAD_ADMIN_TOKEN"],
                 master_key=env["KEYSTEAD_MASTER_KEY"],
                 keys={"app": app["key"], "restricted": restricted["key"]},
                 issued=[app["key"], restricted["key"]])
    wait_until_key_works(gw, restricted["key"])
    try:
        yield gw
    finally:
        code = stop(proc)
    assert code == 0, f"gateway exited {code} on SIGTERM:\n{gw.log_text()}"
    assert "usage ledger flushed" in gw.log_text()
