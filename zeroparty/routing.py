"""Starlette's router, trying only the routes that can match a path's first segment.

Starlette tries every route in order until one matches in full: the app's 100-odd
routes made a request to a route near the end (``POST /u/{token}``, ``POST
/api/events``) test some 40 patterns first, 3-4% of its CPU time. A route whose path
starts with a literal segment (``/u/{token}``: ``u``) can match no path whose first
segment differs, so :class:`FirstSegmentRouter` keeps, per first segment, the routes
that could match, in their order, together with every route that has no literal first
segment (``/{slug}``, a ``Mount("")``, a ``Host``).

The first route among those that matches in full is the one Starlette's loop would have
found first: the routes skipped cannot match. A request that no route matches in full
(405 for another method, a slash to add or remove, 404), a ``root_path``, a websocket and
the lifespan go to Starlette's own loop, unchanged. Routes added to ``routes`` later (as
some tests do) are seen: the grouping is made again when the list's length changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send


def first_segment(path: str) -> str | None:
    """The literal first segment of a route's path (``/u/{token}`` → ``u``, ``/`` → ``""``),
    or ``None`` when it holds a parameter."""
    segment = path.lstrip("/").split("/", 1)[0]
    return None if "{" in segment else segment


def _segment_of(route: BaseRoute) -> str | None:
    """The only first segment a path ``route`` matches can have, or ``None`` (any)."""
    if isinstance(route, Route):
        return first_segment(route.path)
    if isinstance(route, Mount) and route.path:  # Mount("") takes every path
        return first_segment(route.path)
    return None


class FirstSegmentRouter(Router):
    """A :class:`starlette.routing.Router` that finds a full match among the routes of
    the path's first segment (see the module docstring); same routes, same answers."""

    def __init__(self, routes: Sequence[BaseRoute] | None = None, **kwargs: Any) -> None:
        super().__init__(routes, **kwargs)
        self._by_segment: dict[str, list[BaseRoute]] = {}
        self._anywhere: list[BaseRoute] = []
        self._indexed: tuple[int, int] = (0, -1)  # id and length of the list grouped
        self.index()

    def index(self) -> None:
        """Group the routes by first segment (made again by itself when the list's
        length changes; call it after replacing a route in place)."""
        segments = {_segment_of(route) for route in self.routes} - {None}
        by_segment: dict[str, list[BaseRoute]] = {str(s): [] for s in segments}
        anywhere: list[BaseRoute] = []
        for route in self.routes:
            segment = _segment_of(route)
            if segment is None:
                anywhere.append(route)
                for routes in by_segment.values():
                    routes.append(route)
            else:
                by_segment[segment].append(route)
        self._by_segment, self._anywhere = by_segment, anywhere
        self._indexed = (id(self.routes), len(self.routes))

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that may match ``path`` (a route path, ``root_path`` removed), in
        the order Starlette tries them."""
        if self._indexed != (id(self.routes), len(self.routes)):
            self.index()
        return self._by_segment.get(path[1:].split("/", 1)[0], self._anywhere)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for route in self.candidates(scope["path"]):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)
