"""The runtime's watcher: a database outage is logged once, then briefly, then its end."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from keystead.runtime import Runtime
from support import make_loaded


class Outage:
    """The runtime's store, with `down` making every version read fail as PostgreSQL's would."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.down = False

    async def get_version(self, name: str) -> int:
        if self.down:
            raise ConnectionRefusedError("[Errno 111] Connect call failed ('127.0.0.1', 5432)")
        return int(await self.inner.get_version(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_watcher_logs_a_database_outage_once_not_every_second(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression (issue 13): a PostgreSQL outage logged a traceback every second."""

    async def main() -> None:
        runtime = await Runtime.open(make_loaded(tmp_path), serving=False)
        store = Outage(runtime.store)
        runtime.store = store  # type: ignore[assignment]
        try:
            store.down = True
            watcher = asyncio.create_task(runtime._watch(interval=0.005))
            await asyncio.sleep(0.3)  # some sixty failed polls
            store.down = False
            await asyncio.sleep(0.05)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        finally:
            runtime.store = store.inner
            await runtime.close()

    with caplog.at_level(logging.INFO, logger="keystead.runtime"):
        asyncio.run(main())
    lines = [(r.levelname, r.exc_info is not None, r.getMessage()) for r in caplog.records
             if r.name == "keystead.runtime"]
    assert [line[:2] for line in lines] == [("ERROR", True), ("WARNING", False)], lines
    assert lines[0][2].startswith("reloading keys, providers or the config failed; retrying")
    assert lines[1][2].startswith("reloading keys, providers or the config works again after")
