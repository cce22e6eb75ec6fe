"""Capture and preference-center figures as :class:`bench.report.ScenarioResult` tables,
so ``python -m bench.run_all`` writes them into BENCHMARKS.md beside the ledger's."""

from __future__ import annotations

from bench import capture_submissions, preference_center
from bench.report import Options, Row, ScenarioResult

CAPTURE_TARGET = 0.60


def capture_scenario(options: Options) -> ScenarioResult:
    """Capture on PostgreSQL (1 and 2 workers) and the size of embed.js.

    Capture on SQLite is measured by :mod:`bench.hot_paths` against the bare stack."""
    figures = capture_submissions.run(
        options.quick, postgres=options.postgres_url is not None, sqlite=False
    )
    result = ScenarioResult(
        title="Capture submissions on PostgreSQL",
        command="python -m bench.capture_submissions --no-sqlite"
        + (" --quick" if options.quick else ""),
        what=(
            "`POST /f/bench` (urlencoded form: email, name, company, job_title, message; the "
            "profiling box; a new visitor each time) on real `zeroparty serve` workers on "
            f"PostgreSQL; load: {figures['load']}. Baseline: a Starlette endpoint parsing the "
            "same form and inserting the same rows into the same tables with SQLAlchemy Core "
            "statements built once, run in the threadpool (weaker than the bare stack of the "
            "hot paths, which is SQLite only), same uvicorn settings, same run. SQLite "
            "capture: see Hot paths."
        ),
    )
    for row in figures["results"]:
        ours, bare = row["zeroparty"], row["baseline"]
        result.rows.append(
            Row(
                f"{row['database']}, {row['workers']} worker(s), submissions/s",
                f"{ours['requests_per_s']:,.0f}/s (p50 {ours['p50_ms']:.1f} ms, "
                f"p99 {ours['p99_ms']:.1f} ms)",
                f"{bare['requests_per_s']:,.0f}/s (p50 {bare['p50_ms']:.1f} ms, "
                f"p99 {bare['p99_ms']:.1f} ms)",
                f"{row['ratio']:.0%}",
                f">= {CAPTURE_TARGET:.0%}",
                row["ratio"] >= CAPTURE_TARGET,
            )
        )
    size = figures["embed_js"]
    result.rows.append(
        Row(
            "embed.js, gzipped",
            f"{size['gzip_bytes']:,} bytes ({size['bytes']:,} raw)",
            "—",
            "—",
            "< 3 KB",
            size["gzip_bytes"] < 3 * 1024,
        )
    )
    return result


def preference_center_scenario(options: Options) -> ScenarioResult:
    figures = preference_center.run(options.quick)
    page, clicks = figures["page_renders_per_s"], figures["one_click_unsubscribes_per_s"]
    result = ScenarioResult(
        title="Preference center",
        command="python -m bench.preference_center" + (" --quick" if options.quick else ""),
        what=(
            "SQLite, 1 worker. Page: `GET /p/` with a valid session cookie (signature checked, "
            "purposes, topics and state read, template rendered); one-click: `POST /u/{token}` "
            "with `List-Unsubscribe=One-Click`, a different lead each time, "
            f"{clicks['leads']:,} leads. Bare: a Starlette app doing the same reads and "
            "writes without zeroparty's checks, same run."
        ),
    )
    result.rows += [
        Row(
            "preference page renders/s",
            f"{page['zeroparty']:,.0f}/s (p50 {page['zeroparty_p50_ms']:.1f} ms, "
            f"p99 {page['zeroparty_p99_ms']:.1f} ms)",
            f"{page['bare']:,.0f}/s",
            f"{page['zeroparty'] / page['bare']:.0%}",
            "—",
            None,
        ),
        Row(
            "one-click unsubscribes/s",
            f"{clicks['zeroparty']:,.0f}/s (p50 {clicks['zeroparty_p50_ms']:.1f} ms, "
            f"p99 {clicks['zeroparty_p99_ms']:.1f} ms)",
            f"{clicks['bare']:,.0f}/s",
            f"{clicks['zeroparty'] / clicks['bare']:.0%}",
            "—",
            None,
        ),
    ]
    return result
