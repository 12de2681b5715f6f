"""`keystead demo` as a newcomer runs it: the text comes once the port listens, every command in it
works when pasted into a shell (or Python), the route retries and caches, Anthropic's SDK and
agent frameworks (the OpenAI Agents SDK, pydantic-ai) work against it; a busy port is one line
naming --port; each run starts fresh unless told --keep; its files are private."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from e2e.harness import (
    child_env,
    free_port,
    keystead_args,
    ledger_rows,
    spawn,
    stop,
    wait_for_rows,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    proc: subprocess.Popen[Any]
    url: str
    text: str
    key: str
    token: str
    dir: Path


def start_demo(directory: Path, log: Path, *extra: str) -> Demo:
    """`keystead demo` on a free port, run from the repository (as `make demo` runs it), until
    its text is printed."""
    port = free_port()
    with log.open("wb") as sink:
        proc = spawn(keystead_args("demo", "--port", str(port), "--dir", str(directory), *extra),
                     stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while "Press Ctrl-C" not in (text := log.read_text(errors="replace")):
        assert proc.poll() is None and time.monotonic() < deadline, text
        time.sleep(0.05)
    key = re.search(r"demo key\s+(ksk_\w+)", text)
    token = re.search(r"admin token\s+(\S+)", text)
    assert key and token, text
    return Demo(proc, f"http://127.0.0.1:{port}", text, key[1], token[1], directory)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    base = tmp_path_factory.mktemp("demo")
    running = start_demo(base / "data", base / "demo.log")
    yield running
    assert stop(running.proc) == 0, (base / "demo.log").read_text()


def paragraphs(text: str, start: str) -> list[str]:
    """The blank-line-separated blocks of the text that begin with `start`."""
    return [block for block in text.split("\n\n") if block.lstrip("\n").startswith(start)]


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    """A printed command as a user pastes it: bash, from the repository, with this Python's
    packages on the path."""
    env = child_env({"PATH": os.pathsep.join((str(Path(sys.executable).parent),
                                              os.environ.get("PATH", "")))})
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=60, check=False)


# --- the text -----------------------------------------------------------------------------------


def test_the_text_comes_once_the_port_listens(demo: Demo) -> None:
    # No waiting: when the text is there, the gateway answers.
    with socket.create_connection(("127.0.0.1", int(demo.url.rsplit(":", 1)[1])), timeout=1):
        pass
    assert f"keystead demo is listening on {demo.url}" in demo.text
    assert "fresh: a new database, key and admin token" in demo.text


def test_every_printed_command_works_when_pasted(demo: Demo) -> None:
    curls = paragraphs(demo.text, "  curl")
    assert len(curls) == 3  # chat, Anthropic's messages, the route
    for block in curls:
        lines = block.strip("\n").splitlines()
        # Continued lines end with a backslash (the last one, and lines inside the quoted
        # body, need none).
        assert all(line.endswith(" \\") for line in lines[:-1] if "'" not in line), block
        result = run_shell(block)
        assert result.returncode == 0, (block, result.stderr)
        assert "This is a mock reply to:" in result.stdout, (block, result.stdout)
    assert '"type":"message"' in run_shell(curls[1]).stdout  # Anthropic's shape
    assert run_shell(curls[2]).stdout.startswith("HTTP/1.1 200")

    snippets = paragraphs(demo.text, "from openai import") + paragraphs(
        demo.text, "from anthropic import")
    assert len(snippets) == 2
    assert 'Anthropic(base_url="' + demo.url + '",' in snippets[1]  # no /v1: the SDK adds it
    for snippet in snippets:
        result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, (snippet, result.stderr)
        assert result.stdout.startswith("This is a mock reply to: Hello!"), result.stdout

    usage = re.search(r"See what it cost:\s+(.+)", demo.text)
    routes = re.search(r"The routes:\s+(.+)", demo.text)
    assert usage and routes
    shown = run_shell(usage[1])
    assert shown.returncode == 0 and "dev-demo-app-01" in shown.stdout, shown.stderr
    listed = run_shell(routes[1])
    assert listed.returncode == 0, listed.stderr
    assert "support-default" in listed.stdout and "mock-flaky/gpt-4o-mini" in listed.stdout


def test_the_route_retries_its_flaky_deployment_and_caches(demo: Demo) -> None:
    client = openai.OpenAI(base_url=f"{demo.url}/v1", api_key=demo.key, max_retries=0,
                           timeout=10)
    attempts = []
    for i in range(12):  # a third of the flaky deployment's calls fail, and are retried
        raw = client.chat.completions.with_raw_response.create(
            model="support-default", messages=[{"role": "user", "content": f"Route {i}!"}])
        assert raw.http_response.status_code == 200
        attempts.append(int(raw.headers.get("x-keystead-attempts", "1")))
    assert max(attempts) > 1
    again = client.chat.completions.with_raw_response.create(
        model="support-default", messages=[{"role": "user", "content": "Route 0!"}])
    assert again.headers["x-keystead-cache"] == "hit"
    client.close()


# --- Anthropic's SDK and agent frameworks -------------------------------------------------------


def test_anthropics_sdk_on_the_messages_api(demo: Demo) -> None:
    weather = {"name": "get_weather", "description": "The weather in a city.",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}}
    with anthropic.Anthropic(base_url=demo.url, api_key=demo.key, max_retries=0,
                             timeout=10) as client:
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50,
                                    messages=[{"role": "user", "content": "Stream!"}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text.startswith("This is a mock reply to: Stream!")
        assert final.usage.output_tokens > 0
        called = client.messages.create(
            model="claude-haiku-4-5", max_tokens=100, tools=[weather],  # type: ignore[list-item]
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "Weather in Paris?"}])
        assert called.stop_reason == "tool_use"
        assert [b.type for b in called.content] == ["tool_use"]
    (row,) = wait_for_rows(demo.dir / "keystead-demo.db", "model_served = ?",
                           ("claude-sonnet-4-6",), 1)  # the stream's, read to its end
    assert row["cost_nanousd"] > 0 and row["provider"] == "mock-anthropic"  # Anthropic's prices


def test_an_openai_agents_sdk_agent_calls_its_function_tool(demo: Demo) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)  # traces would go to OpenAI's servers
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"22 C in {city}"

    async def main() -> tuple[str, str, list[str]]:
        client = openai.AsyncOpenAI(base_url=f"{demo.url}/v1", api_key=demo.key, max_retries=0)
        agent = agents.Agent(
            name="weather", instructions="Answer questions about the weather.",
            tools=[get_weather],
            model=agents.OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client))
        result = await agents.Runner.run(agent, "Weather in Paris?")
        kinds = [type(item).__name__ for item in result.new_items]
        streamed = agents.Runner.run_streamed(agent, "Weather in Rome?")
        async for _ in streamed.stream_events():
            pass
        await client.close()
        return result.final_output, streamed.final_output, kinds

    final, streamed_final, kinds = asyncio.run(main())
    assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
    assert len(calls) == 2  # the tool ran once per run, then the model answered
    assert final.startswith("This is a mock reply to: Weather in Paris?")
    assert streamed_final.startswith("This is a mock reply to: Weather in Rome?")
    # Four Responses calls (a function call, then the answer, twice), each priced from the
    # upstream's usage, streamed or not: none estimated.
    rows = wait_for_rows(demo.dir / "keystead-demo.db", "endpoint = 'responses'", (), 4)
    assert all(r["completion_tokens"] > 0 and r["cost_nanousd"] > 0 for r in rows)
    assert not any(r["usage_estimated"] for r in rows)


def test_a_pydantic_ai_agent_uses_its_tool_and_returns_structured_output(demo: Demo) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic import BaseModel
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    class Forecast(BaseModel):
        city: str
        celsius: int

    calls: list[str] = []

    async def main() -> list[object]:
        # The client is ours, to close in the loop that used it.
        client = openai.AsyncOpenAI(base_url=f"{demo.url}/v1", api_key=demo.key, max_retries=0)
        provider = OpenAIProvider(openai_client=client)
        outputs: list[object] = []
        for model in (OpenAIChatModel("gpt-4o-mini", provider=provider),
                      OpenAIResponsesModel("gpt-4o-mini", provider=provider)):
            agent = Agent(model, instructions="Answer questions about the weather.")

            @agent.tool_plain
            def get_weather(city: str) -> str:
                """The weather in a city."""
                calls.append(city)
                return "22 C"

            outputs.append((await agent.run("Weather in Paris?")).output)
            outputs.append((await Agent(model, output_type=Forecast).run("Forecast")).output)
        await client.close()
        return outputs

    outputs = asyncio.run(main())
    assert len(calls) == 2  # once per model: the tool ran, then the model answered
    for text, forecast in zip(outputs[::2], outputs[1::2], strict=True):
        assert isinstance(text, str) and text.startswith("This is a mock reply to: Weather")
        assert isinstance(forecast, Forecast)


# --- the port, the data directory ---------------------------------------------------------------


def test_a_busy_port_is_one_line_naming_port_and_nothing_else(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(
            keystead_args("demo", "--port", str(port), "--dir", str(tmp_path / "d")),
            capture_output=True, text=True, env=child_env(), timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout == ""  # no key, no token, no "listening"
    (line,) = result.stderr.splitlines()
    assert f"port {port}" in line and "--port" in line and "in use" in line
    assert not (tmp_path / "d").exists()  # nothing written either


def test_each_run_starts_fresh_unless_kept_and_its_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_demo(data, tmp_path / "1.log")
    try:
        with openai.OpenAI(base_url=f"{first.url}/v1", api_key=first.key, max_retries=0) as c:
            c.chat.completions.create(model="gpt-4o-mini",
                                      messages=[{"role": "user", "content": "Remember me"}])
    finally:
        assert stop(first.proc) == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.iterdir():  # secrets, the database and its journals: the owner's only
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert ledger_rows(data / "keystead-demo.db", "1 = 1")

    kept = start_demo(data, tmp_path / "2.log", "--keep")
    assert stop(kept.proc) == 0
    assert (kept.key, kept.token) == (first.key, first.token)
    assert "kept from the last run" in kept.text
    assert ledger_rows(data / "keystead-demo.db", "1 = 1")

    fresh = start_demo(data, tmp_path / "3.log")
    assert stop(fresh.proc) == 0
    assert fresh.key != first.key and fresh.token != first.token
    assert "fresh: a new database" in fresh.text
    assert not ledger_rows(data / "keystead-demo.db", "1 = 1")  # nobody else's usage rows
