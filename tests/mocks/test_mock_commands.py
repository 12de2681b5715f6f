"""`keystead mock-anthropic` and `keystead mock-upstream` serve the mocks on a port of their own:
they say where once they listen, and a busy port is one line naming --port."""

from __future__ import annotations

import re
import socket
import subprocess
from typing import Any

import anthropic
import openai
import pytest

from e2e.harness import child_env, keystead_args, spawn, stop

pytestmark = pytest.mark.e2e


def started(*args: str) -> tuple[subprocess.Popen[Any], str]:
    """The command, started with --port 0, and the URL it says it listens on."""
    proc = spawn(keystead_args(*args, "--port", "0"), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # printed once the socket listens
    found = re.search(r"on (http://\S+)", line)
    assert found, line
    return proc, found[1]


def test_mock_anthropic_serves_anthropics_sdk() -> None:
    proc, url = started("mock-anthropic", "--api-key", "sk-ant-mock", "--models",
                        "claude-haiku-4-5")
    try:
        with anthropic.Anthropic(base_url=url, api_key="sk-ant-mock", max_retries=0,
                                 timeout=10) as client:
            message = client.messages.create(model="claude-haiku-4-5", max_tokens=4,
                                             messages=[{"role": "user", "content": "Hi"}])
            assert message.content[0].type == "text"
            assert message.content[0].text == "This is a mock"
            assert message.stop_reason == "max_tokens"
            with pytest.raises(anthropic.NotFoundError):
                client.messages.create(model="claude-opus-4-6", max_tokens=4,
                                       messages=[{"role": "user", "content": "Hi"}])
        with anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0) as client, \
                pytest.raises(anthropic.AuthenticationError):
            client.models.list()
    finally:
        assert stop(proc) == 0


def test_mock_upstream_serves_the_openai_sdk() -> None:
    proc, url = started("mock-upstream")
    try:
        assert url.endswith("/v1")
        with openai.OpenAI(base_url=url, api_key="any", max_retries=0, timeout=10) as client:
            reply = client.responses.create(model="gpt-4o-mini", input="Hi")
            assert reply.output_text.startswith("This is a mock reply to: Hi")
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("command", ["mock-anthropic", "mock-upstream"])
def test_a_busy_port_is_one_line_naming_port(command: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(keystead_args(command, "--port", str(port)), capture_output=True,
                                text=True, env=child_env(), timeout=60, check=False)
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"port {port}" in line and "--port" in line
