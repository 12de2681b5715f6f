"""`providers add` without --models serves the vendor's models, and when two providers claim a
name, `providers add` and `providers list` say which one answers it and why (issue 12)."""

from __future__ import annotations

import asyncio
import json

from cli.helpers import Project, Remote
from keystead.runtime import Runtime

OPENAI = ("providers", "add", "openai", "--type", "openai", "--base-url",
          "http://127.0.0.1:9/v1", "--api-key-stdin")
KEY = "sk-defaults-test-0123456789\n"


def answers(project: Project, model: str) -> tuple[str, str]:
    """Which provider the gateway on this project's store sends `model` to, and as what."""

    async def resolve() -> tuple[str, str]:
        runtime = await Runtime.open(project.loaded(), serving=False)
        try:
            provider, upstream = runtime.providers.resolve(model)
            return provider.name, upstream
        finally:
            await runtime.close()

    return asyncio.run(resolve())


def test_the_readmes_add_line_serves_openais_models_not_the_mocks(project: Project) -> None:
    # The project's config is what `init` used to write: a mock listing OpenAI's names.
    added = project.ok(*OPENAI, input=KEY)
    assert added.stdout.splitlines()[1] == ("serves: gpt-*, chatgpt-*, o1*, o3*, o4*, "
                                            "text-embedding-*, ft:* (type openai's defaults; "
                                            "--models chooses)")
    assert ("note: gpt-4o-mini, gpt-4o, text-embedding-3-small: openai answers, not mock (a real "
            "provider comes before a mock); mock/gpt-4o-mini still reaches mock") in added.stderr
    for model in ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "o3-mini"):
        assert answers(project, model) == ("openai", model)
    assert answers(project, "mock/gpt-4o-mini") == ("mock", "gpt-4o-mini")


def test_adding_models_explicitly_also_wins_over_the_mock(project: Project) -> None:
    project.ok(*OPENAI, "--models", "gpt-4o-mini", input=KEY)
    assert answers(project, "gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert answers(project, "gpt-4o") == ("mock", "gpt-4o")  # only the mock lists it


def test_a_provider_that_loses_a_name_is_warned_and_told_how_to_reach_it(
        project: Project) -> None:
    project.ok(*OPENAI, input=KEY)
    first = project.ok("providers", "add", "azure", "--type", "azure", "--base-url",
                       "https://r.openai.azure.com", "--api-key-stdin", "--deployment",
                       "gpt-4o=prod-4o", input=KEY)
    assert "serves: gpt-4o (type azure's deployments; --models chooses)" in first.stdout
    assert ("note: gpt-4o: azure answers, not openai, mock (a listed name comes before a "
            "pattern; a real provider comes before a mock)") in first.stderr
    second = project.ok("providers", "add", "azure2", "--type", "azure", "--base-url",
                        "https://r2.openai.azure.com", "--api-key-stdin", "--deployment",
                        "gpt-4o=other", input=KEY)
    assert ("warning: gpt-4o: azure answers, not azure2, openai, mock (it was added first; "
            "a listed name comes before a pattern; a real provider comes before a mock); "
            "azure2/gpt-4o still reaches azure2") in second.stderr
    assert answers(project, "gpt-4o") == ("azure", "gpt-4o")
    assert answers(project, "azure2/gpt-4o") == ("azure2", "gpt-4o")


def test_list_says_which_provider_answers_a_shared_name(project: Project) -> None:
    project.ok(*OPENAI, input=KEY)
    table = project.ok("providers", "list").stdout
    assert "Names more than one provider claims (who answers them, and why):" in table
    assert "  gpt-4o-mini, gpt-4o, text-embedding-3-small: openai answers, not mock" in table
    listed = project.ok("providers", "list", "--format", "json")
    assert {p["name"] for p in json.loads(listed.stdout)} == {"mock", "openai"}  # still JSON
    assert "openai answers, not mock" in listed.stderr


def test_a_provider_without_models_or_defaults_is_told_it_serves_nothing(
        project: Project) -> None:
    added = project.ok("providers", "add", "local", "--type", "openai-compatible",
                       "--base-url", "http://127.0.0.1:9/v1")
    assert "warning: provider local serves no model" in added.stderr
    assert "--models 'llama*,qwen*'" in added.stderr
    assert "serves:" not in added.stdout


def test_the_same_through_the_admin_api(project: Project, remote: Remote) -> None:
    added = remote.run("providers", "add", "claude", "--type", "anthropic", "--api-key-stdin",
                       "--base-url", "http://127.0.0.1:9")
    assert added.exit_code == 2  # no key on stdin: refused before anything is stored
    # Over the admin API a key is given by value (references need admin.secret_refs).
    added = remote.ok("providers", "add", "claude", "--type", "anthropic", "--api-key-stdin",
                      input="sk-ant-test-key\n")
    assert "serves: claude-* (type anthropic's defaults; --models chooses)" in added.stdout
    added = remote.ok("providers", "add", "openai", "--type", "openai", "--base-url",
                      "http://127.0.0.1:9/v1", "--api-key-stdin", input="sk-test-openai-key\n")
    assert "note: gpt-4o-mini, gpt-4o, text-embedding-3-small: openai answers" in added.stderr
    provider, upstream = remote.runtime.providers.resolve("gpt-4o-mini")
    assert (provider.name, upstream) == ("openai", "gpt-4o-mini")
