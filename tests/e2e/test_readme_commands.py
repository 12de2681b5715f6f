"""README.md's two commands, run as a newcomer runs them: in a fresh clone, with a fresh
virtualenv, through make. `make test` runs with one small test file (the whole suite is what CI
runs; here the point is that the target installs, lints, type-checks and tests from nothing),
then `make demo` serves a chat completion to the official SDK and stops cleanly.

Slow (it installs keystead and its test extras into a new virtualenv, from pip's cache when
warm); the price of knowing the README's first lines work on a fresh machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import openai
import pytest

from e2e.harness import free_port, stop

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None, "README.md opens with a sh block of its two commands"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()
            if line.strip()]


def test_the_readme_opens_with_the_demo_and_the_tests() -> None:
    assert readme_commands() == ["make demo", "make test"]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None,
                    reason="needs make and git")
@pytest.mark.timeout(900)  # a fresh virtualenv, a clean mypy cache, then the demo
def test_the_readmes_two_commands_work_from_a_clean_clone(tmp_path: Path) -> None:
    clone = tmp_path / "keystead"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KEYSTEAD_", "VIRTUAL_ENV", "PYTHON"))}
    env["PYTEST_ADDOPTS"] = "-p no:cacheprovider tests/keys/test_format.py"

    tested = subprocess.run(["make", "test"], cwd=clone, env=env, capture_output=True, text=True,
                            timeout=1200)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output[-4000:]
    assert "All checks passed!" in output and "Success: no issues found" in output, output
    assert re.search(r"\d+ passed", output), output

    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        demo = subprocess.Popen(
            ["make", "demo", f"DEMO_ARGS=--port {port} --dir {tmp_path / 'demo-data'}"],
            cwd=clone, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C" not in (text := log.read_text(errors="replace")):
            assert demo.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.1)
        assert "installing" not in text  # the test install covers the demo's
        key = re.search(r"demo key\s+(ksk_\S+)", text)
        assert key is not None, text
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1),
                               max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}])
        assert reply.choices[0].message.content
    finally:
        os.killpg(demo.pid, 15)  # make and the demo it started
        stop(demo)
