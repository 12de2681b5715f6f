"""A real setup, as a new user does it: the README's "Set it up for real" lines, read from
README.md itself and run as written, and the "Next:" lines `keystead init` prints, run as
printed. `keystead mock-upstream --api-key KEY` stands in for OpenAI (its URL replaces
https://api.openai.com/v1, its key is the one piped to --api-key-stdin); the client is the
official openai SDK.

Issue 12: these lines ended with a production key whose gpt-4o-mini calls the built-in mock
answered (200, lorem ipsum, real prices, no warning). The proof that a call reached the
upstream process and not the mock inside the gateway: `x-keystead-provider: openai`, and once
the upstream process is stopped, the same call fails with 502 upstream_unreachable.
"""

from __future__ import annotations

import re
import secrets
import shlex
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from e2e.harness import (
    free_port,
    keystead_args,
    run_cli,
    spawn,
    stop,
    wait_for_rows,
    wait_ready,
)
from keystead.keys.format import KEY_PATTERN

README = Path(__file__).resolve().parents[2] / "README.md"
OPENAI_URL = "https://api.openai.com/v1"


def readme_lines() -> list[list[str]]:
    """The commands of the first ```sh block under "## Set it up for real"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set it up for real", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "README's 'Set it up for real' has no ```sh block"
    return commands(block.group(1))


def commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines
    return [argv for argv in (shlex.split(line, comments=True) for line in joined.splitlines())
            if argv]


class Upstream:
    """`keystead mock-upstream --api-key KEY` in its own process: OpenAI's stand-in."""

    def __init__(self, directory: Path):
        self.key = "sk-proj-" + secrets.token_urlsafe(24)
        self.port = free_port()
        self.log = directory / "upstream.log"
        with self.log.open("wb") as sink:
            self.proc = spawn(keystead_args("mock-upstream", "--port", str(self.port),
                                            "--api-key", self.key), stderr=sink)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mock upstream did not start")


def run_as_written(lines: list[list[str]], start: Path, upstream: Upstream,
                   ) -> tuple[Path, str, subprocess.Popen[Any], str, Path]:
    """Run each line in a shell-like way: `cd` moves, `keystead ...` runs (the provider key on
    stdin), `keystead serve` starts in the background. Only two things differ from what a user
    types: OpenAI's URL is the mock upstream's, and the port is a free one. Returns the
    directory, the key `keys create` printed, the server, its URL and its log."""
    cwd, key = start, None
    for argv in lines:
        if argv[0] == "cd":
            (target,) = argv[1:]
            cwd = cwd / target
            assert cwd.is_dir(), f"cd {target}: no such directory"
            continue
        assert argv[0] == "keystead", f"unexpected line: {shlex.join(argv)}"
        args = [upstream.url if arg == OPENAI_URL else arg for arg in argv[1:]]
        if args[0] == "serve":
            break
        if "providers" in args[:1] and "add" in args[:2] and "--api-key-stdin" in args:
            upstream.wait()
        result = run_cli(*args, cwd=cwd, input=upstream.key + "\n"
                         if "--api-key-stdin" in args else None)
        if args[:2] == ["keys", "create"]:
            shown = KEY_PATTERN.search(result.stdout)
            assert shown is not None, result.stdout
            key = shown.group(0)
        if args[:2] == ["providers", "test"]:
            assert result.stdout.startswith(f"ok: {args[2]} status=200"), result.stdout
    else:
        raise AssertionError("the lines never start the gateway (keystead serve)")
    assert key is not None, "the lines never create a key"
    port = free_port()
    if "--port" in args:
        args[args.index("--port") + 1] = str(port)
    else:
        args += ["--port", str(port)]
    log = cwd / "serve.log"
    with log.open("wb") as sink:
        server = spawn(keystead_args(*args), cwd=cwd, stderr=sink)
    base_url = f"http://127.0.0.1:{port}"
    wait_ready(base_url, server, log)
    return cwd, key, server, base_url, log


def ask(base_url: str, key: str, model: str) -> Any:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    try:
        return client.chat.completions.with_raw_response.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": "Hello!"}])
    finally:
        client.close()


def proves_the_upstream_answered(base_url: str, key: str, model: str, upstream: Upstream,
                                 log: Path) -> None:
    raw = ask(base_url, key, model)
    assert raw.headers["x-keystead-provider"] == "openai", log.read_text()
    assert float(raw.headers["x-keystead-cost-usd"]) > 0  # priced as OpenAI's model
    reply = raw.parse()
    assert reply.choices[0].message.content
    # The upstream process is the one that answered: without it, the same call fails.
    stop(upstream.proc)  # (mock-upstream dies of the SIGTERM rather than exiting 0)
    with pytest.raises(openai.InternalServerError) as failed:
        ask(base_url, key, model)
    assert failed.value.status_code == 502
    assert failed.value.response.json()["error"]["code"] == "upstream_unreachable"


def test_the_readmes_set_it_up_for_real_lines_reach_the_real_provider(tmp_path: Path) -> None:
    lines = readme_lines()
    upstream = Upstream(tmp_path)
    directory, key, server, base_url, log = run_as_written(lines, tmp_path, upstream)
    try:
        (create,) = [argv for argv in lines if argv[1:3] == ["keys", "create"]]
        model = create[create.index("--models") + 1].split(",")[0]
        proves_the_upstream_answered(base_url, key, model, upstream, log)
        rows = wait_for_rows(directory / "keystead.db", "provider = ?", ["openai"], 2)
        served, failed = sorted(rows, key=lambda row: float(row["ts"]))
        assert (served["model_served"], served["team"], served["status"]) == (model, "support",
                                                                              200)
        assert served["cost_nanousd"] > 0  # the team's budget is charged OpenAI's price
        assert (failed["status"], failed["error_code"]) == (502, "upstream_unreachable")
    finally:
        assert stop(server) == 0, log.read_text()
    summary = log.read_text()
    assert "openai (openai, added at run time): gpt-*" in summary
    assert "mock (mock, config file): mock-chat, mock-embedding" in summary
    assert "shadowed" not in summary  # nothing claims a name another provider serves
    assert upstream.key not in summary


def test_inits_next_lines_work_as_printed(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path)
    printed = run_cli("init", "site", cwd=tmp_path).stdout
    lines = commands(printed.split("Next:", 1)[1].split("\n", 1)[1])
    assert lines[0] == ["cd", "site"] and lines[-1][:2] == ["keystead", "serve"]
    _, key, server, base_url, log = run_as_written(lines, tmp_path, upstream)
    try:
        proves_the_upstream_answered(base_url, key, "gpt-4o-mini", upstream, log)
    finally:
        assert stop(server) == 0, log.read_text()
