"""The reliability suite: real server processes, faults, hostile input, backups.

Every test under ``tests/reliability/`` carries the ``reliability`` marker, so
``pytest -m reliability`` runs it alone and ``pytest -m "not reliability"`` the fast
suite. It runs on the database ``ZEROPARTY_TEST_DB`` names, like the rest of the suite
(``scripts/test`` runs both). Its time is bounded (a few minutes per database on two
cores); the long soaks are ``bench/soak.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.live import ServeProcess

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """``serve_process(url, workers=N, **env)``: a ``zeroparty serve`` not yet started;
    every one is stopped after the test."""
    started: list[ServeProcess] = []

    def make(
        database_url: str, *, workers: int = 1, args: tuple[str, ...] = (), **env: str
    ) -> ServeProcess:
        workdir = tmp_path / f"serve{len(started)}"
        workdir.mkdir()
        process = ServeProcess(database_url, workdir, workers=workers, args=args, **env)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
