"""Periodic jobs inside ``serve``: a daemon thread per job, stopped with the app.

Jobs must be safe to run in every worker process at once (each one here is: claimed
rows, conflict-free inserts). A failing run is logged and retried next period; it never
takes the web app down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("zeroparty.background")


class PeriodicJob:
    def __init__(self, name: str, interval: float, run: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self._run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"zeroparty-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._run()
            except Exception:
                log.exception("background job %s failed; retrying in %ss", self.name, self.interval)
