"""The demo's key belongs to the demo team, which the demo makes itself (a key's team must
exist)."""

from __future__ import annotations

import asyncio

from cli.helpers import Project
from keystead.cli.demo_runtime import ensure_demo_key
from keystead.config.load import load_config
from keystead.runtime import Runtime


def test_the_demo_key_and_its_team(project: Project) -> None:
    async def main() -> None:
        runtime = await Runtime.open(load_config(project.config, environ={
            "KEYSTEAD_MASTER_KEY": project.master_key}), serving=False)
        try:
            first = await ensure_demo_key(runtime, project.dir)
            record = runtime.keys.identify(b"Bearer " + first.encode())
            assert (record.name, record.team) == ("dev-demo-app-01", "demo")
            team = await runtime.store.get_team("demo")
            assert team is not None and team.description == "created by keystead demo"
            assert await ensure_demo_key(runtime, project.dir) == first  # kept while it works
            # A lost key file means a new key, on the team that exists already.
            (project.dir / "demo.key").unlink()
            second = await ensure_demo_key(runtime, project.dir)
            assert second != first
            assert runtime.keys.identify(b"Bearer " + second.encode()).name == "dev-demo-app-02"
            assert [t.name for t in await runtime.store.list_teams()] == ["demo"]
        finally:
            await runtime.close()

    asyncio.run(main())
