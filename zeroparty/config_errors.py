"""Errors in the site configuration file, located by key path (and line where known)."""

from __future__ import annotations

from collections.abc import Sequence

from zeroparty.errors import InvalidInput


class SiteConfigError(InvalidInput):
    """The site file cannot be loaded; nothing from it was applied.

    ``problems`` lists every problem found, each as ``(where, what)``: ``where`` is the
    file and key path (``site.toml: purposes.newsletter.notice.en``) or file and line.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {where}: {what}" for where, what in self.problems)
        super().__init__(
            f"site configuration rejected ({len(self.problems)} problem(s)):\n{lines}",
            fields=dict(self.problems),
        )


class ConfigProblems:
    """Collects problems while a section is parsed, so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, what: str) -> None:
        self.items.append((where, what))

    def __bool__(self) -> bool:
        return bool(self.items)
