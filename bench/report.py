"""Results of a scenario and how they are written as Markdown."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a scenario table: zeroparty's figure beside the bare one."""

    label: str
    zeroparty: str
    bare: str
    ratio: str
    target: str
    met: bool | None  # None: informative only, no target applies


@dataclass(slots=True)
class ScenarioResult:
    title: str
    command: str
    what: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", f"`{self.command}`", "", self.what, ""]
        lines.append("| scenario | zeroparty | bare baseline | ratio | target | met? |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for row in self.rows:
            met = "—" if row.met is None else ("yes" if row.met else "**no**")
            lines.append(
                f"| {row.label} | {row.zeroparty} | {row.bare} | {row.ratio} | {row.target} "
                f"| {met} |"
            )
        if self.details:
            lines += ["", *self.details]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Options:
    """What every scenario takes from the command line."""

    quick: bool
    postgres_url: str | None


def parse_options(description: str, argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="short cells, smaller data")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="an administrative PostgreSQL URL; scratch databases are made beside it",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    return Options(quick=args.quick, postgres_url=None if args.no_postgres else args.postgres_url)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def ratio_text(value: float, bare: float) -> str:
    return f"{value / bare:.0%}" if bare else "n/a"


def per_second(value: float) -> str:
    return f"{value:,.0f}/s"
