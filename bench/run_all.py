"""Run every scenario and rewrite ``BENCHMARKS.md``.

``python -m bench.run_all [--quick] [--no-postgres] [--postgres-url URL]``

The analysis of targets missed (profiles and proposed fixes) and the figures of
earlier code live in ``bench/analysis.md``, written by hand; the report links to it and
shows only what this run measured.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    bench_console,
    bench_scoring,
    consent_lookup,
    hot_paths,
    ledger_appends,
    ledger_verify,
    proofs,
)
from bench.feature_scenarios import capture_scenario
from bench.machine import describe, load_average, source_state, wait_for_quiet
from bench.measured_process import measuring_tool
from bench.report import Options, ScenarioResult, parse_options
from zeroparty.settings import PROJECT_ROOT

REPORT = PROJECT_ROOT / "BENCHMARKS.md"
ANALYSIS = Path(__file__).with_name("analysis.md")
SOAK = Path(__file__).with_name("soak.md")  # written by `python -m bench.soak`
QUIET_LOAD = 1.5
QUIET_WAIT_S = 90.0

SCENARIOS: list[tuple[str, Callable[[Options], ScenarioResult]]] = [
    ("hot paths", hot_paths.run),
    ("ledger appends", ledger_appends.run),
    ("ledger verify", ledger_verify.run),
    ("consent look-up", consent_lookup.run),
    ("proofs", proofs.scenario),
    ("capture submissions on PostgreSQL", capture_scenario),
    ("compliance console", bench_console.run),
    ("lead scoring", bench_scoring.run),
]


def _run_one(
    name: str, scenario: Callable[[Options], ScenarioResult], options: Options
) -> ScenarioResult:
    before = wait_for_quiet(QUIET_LOAD, 0 if options.quick else QUIET_WAIT_S)
    started = time.perf_counter()
    try:
        result = scenario(options)
    except Exception as exc:  # a broken scenario is reported, the others still run
        traceback.print_exc()
        result = ScenarioResult(title=name.capitalize(), command="", what="")
        result.notes.append(f"FAILED: {type(exc).__name__}: {str(exc)[:500]}")
    after = load_average()
    result.notes.append(
        f"Took {time.perf_counter() - started:.0f} s; 1-minute load average {before:.1f} at "
        f"the start, {after:.1f} at the end (this machine is shared: other work running "
        "at the same time lowers every figure, zeroparty's and bare alike)."
    )
    return result


def render(
    options: Options, results: list[ScenarioResult], started: datetime, source_at_start: str
) -> str:
    mode = "--quick" if options.quick else "full"
    command = "python -m bench.run_all" + (" --quick" if options.quick else "")
    lines = [
        "# Benchmarks",
        "",
        "zeroparty's hot paths beside a bare baseline measured in the same run, on the "
        "same machine and database; a figure is judged by its ratio to that baseline "
        "(targets below), never against numbers from another machine.",
        "",
        "Commands (`make bench` runs the first):",
        "",
        "```",
        "python -m bench.run_all [--quick] [--no-postgres] [--postgres-url URL]",
        "python -m bench.hot_paths [--quick] [--workers 1,2]",
        "python -m bench.ledger_appends [--quick] [--no-postgres]",
        "python -m bench.ledger_verify [--quick] [--no-postgres]",
        "python -m bench.consent_lookup [--quick]",
        "python -m bench.proofs [--quick]",
        "python -m bench.capture_submissions [--quick] [--no-postgres] [--no-sqlite]",
        "python -m bench.preference_center [--quick]",
        "python -m bench.soak [--seconds S] [--rate R] [--workers 1,2,4] [--db sqlite,postgresql]",
        "python -m bench.bench_console [--quick] [--no-postgres]",
        "python -m bench.bench_scoring [--quick] [--no-postgres] [--leads N] [--write]",
        "python -m bench.bench_import [--rows N] [--no-postgres] [--write]",
        "python -m bench.bench_predictive [--leads N] [--write]",
        "```",
        "",
        f"Latest run: `{command}` ({mode}), started {started:%Y-%m-%d %H:%M} UTC on "
        f"{source_at_start}{_source_change(source_at_start)}.",
        "",
        *describe(options.postgres_url),
        f"- peak memory of child processes measured with {measuring_tool()}",
        "",
    ]
    for result in results:
        lines.append(result.markdown())
    if SOAK.exists():
        lines.append(SOAK.read_text().rstrip() + "\n")
    if ANALYSIS.exists():
        # Why targets are missed, and every earlier run's figures, stay in the
        # analysis: this report shows only what the current code measured.
        lines.append(
            "## Analysis and history\n\nWhy targets are missed (profiles, what to do next) and "
            "the figures of earlier code: [bench/analysis.md](bench/analysis.md).\n"
        )
    return "\n".join(lines)


_MARKED = re.compile(r"<!-- (?P<key>[\w-]+):start -->.*?<!-- (?P=key):end -->\n?", re.S)


def kept_sections(previous: str, rendered: str) -> str:
    """Sections other benches write between their own markers (``python -m
    bench.bench_import`` and the like) that this run did not produce: kept as they
    were, so a full run never deletes figures it does not measure."""
    kept = [
        match.group(0)
        for match in _MARKED.finditer(previous)
        if f"<!-- {match.group('key')}:start -->" not in rendered
    ]
    return "\n".join(block.rstrip() + "\n" for block in kept)


def _source_change(source_at_start: str) -> str:
    """A note when the work tree changed while the scenarios ran (figures then mix)."""
    now = source_state(PROJECT_ROOT)
    return "" if now == source_at_start else f"; by the end of the run: {now}"


def main() -> int:
    options = parse_options(__doc__ or "")
    started = datetime.now(UTC)
    source_at_start = source_state(PROJECT_ROOT)
    results = []
    for name, scenario in SCENARIOS:
        print(f"== {name}", flush=True)
        results.append(_run_one(name, scenario, options))
    previous = REPORT.read_text() if REPORT.exists() else ""
    rendered = render(options, results, started, source_at_start)
    kept = kept_sections(previous, rendered)
    REPORT.write_text(rendered + ("\n" + kept if kept else ""))
    print(f"wrote {REPORT}")
    failed = any(note.startswith("FAILED") for r in results for note in r.notes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
