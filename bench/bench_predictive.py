"""The predictive score's core: training time and memory, scoring latency, AUC.

On N synthetic leads (default 100,000, all with profiling consent and an outcome) from
``bench/predictive_data.py`` (a documented generator with a known signal), in a child
process: generating the leads, then :func:`scoring.predictive.train` (one-hot encoding,
standardising, a Newton fit of the L2-regularised logistic regression on the 75% of
leads on the training side of the seeded split, evaluation on the held-out 25%), timed;
its peak memory as the child's maximum resident set (data included) and as the peak of
allocations traced during training alone (``tracemalloc``, which sees numpy's arrays).
Scoring latency: one lead at a time through ``TrainedModel.probabilities`` (what a
rescore after one event costs), and in batches of 10,000. Quality: the model's AUC on
the held-out leads beside the rule score's AUC (the demo site's rules) on the same
leads, and the AUC of the true log-odds (the best any model could do).

Run alone: ``python -m bench.bench_predictive [--leads N] [--write]`` (``--write``
replaces this benchmark's own section of ``BENCHMARKS.md``, between its markers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime

from bench.bench_import import replace_section
from bench.machine import describe
from bench.measured_process import run_measured
from bench.predictive_data import generate
from bench.report import Row, ScenarioResult
from scoring.predictive import DEFAULT_HELD_OUT, held_out, publication, rank_auc, train

TITLE = "Predictive score (model core)"
KEY = "bench_predictive"
COMMAND = "python -m bench.bench_predictive [--leads N] [--write]"


def child(leads: int) -> None:
    started = time.perf_counter()
    data = generate(leads, seed=7)
    generated = time.perf_counter() - started
    tracemalloc.start()
    started = time.perf_counter()
    model = train(data.records, purpose="profiling", permitted=data.permitted, seed=0)
    trained = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sample = data.records[:5000]
    single = []
    for record in sample:
        tick = time.perf_counter()
        model.probabilities([record])
        single.append(time.perf_counter() - tick)
    single.sort()
    batch = data.records[:10_000]
    tick = time.perf_counter()
    model.probabilities(batch)
    batch_s = time.perf_counter() - tick
    held = [r for r in data.records if r.outcome is not None]
    tested = [r for r in held if held_out(r.lead_id, 0, DEFAULT_HELD_OUT)]
    card = model.card
    figures = {
        "generate_s": generated,
        "train_s": trained,
        "traced_mb": traced_peak / 2**20,
        "single_p50_us": statistics.median(single) * 1e6,
        "single_p99_us": single[int(len(single) * 0.99)] * 1e6,
        "batch_us": batch_s / len(batch) * 1e6,
        "auc": card.auc,
        "rule_auc": card.rule_auc,
        "oracle_auc": rank_auc(
            [data.true_logits[r.lead_id] for r in tested], [int(r.outcome or 0) for r in tested]
        ),
        "brier": card.brier,
        "ece": card.calibration_error,
        "train_rows": card.train_rows,
        "held_out_rows": card.held_out_rows,
        "features": len(card.features),
        "publish": publication(card).publish,
    }
    print(json.dumps(figures))


def run(leads: int) -> ScenarioResult:
    result = ScenarioResult(
        title=TITLE,
        command=f"python -m bench.bench_predictive --leads {leads}",
        what=(__doc__ or "").split("\n\n", 1)[1].split("\n\nRun alone")[0],
    )
    measured = run_measured(
        [sys.executable, "-m", "bench.bench_predictive", "--child", str(leads)],
        env=dict(os.environ),
    )
    if measured.returncode != 0:
        raise RuntimeError(f"child failed: {measured.stderr[-800:]}")
    f = json.loads(measured.stdout.strip().splitlines()[-1])
    result.rows += [
        Row(f"train on {leads:,} leads ({f['train_rows']:,} fit, {f['held_out_rows']:,} held out, "
            f"{f['features']} features)", f"{f['train_s']:.2f} s", "—", "—", "—", None),
        Row("peak memory: whole child (leads as Python objects + training) / traced in training",
            f"{measured.peak_mb:.0f} MB / {f['traced_mb']:.0f} MB", "—", "—", "—", None),
        Row("scoring latency, one lead per call (p50 / p99)",
            f"{f['single_p50_us']:.0f} / {f['single_p99_us']:.0f} µs", "—", "—", "—", None),
        Row("scoring, batches of 10,000, per lead", f"{f['batch_us']:.1f} µs", "—", "—", "—",
            None),
        Row("held-out AUC: model (rule score alongside; true log-odds as the ceiling)",
            f"{f['auc']:.3f}", f"rules {f['rule_auc']:.3f}", f"ceiling {f['oracle_auc']:.3f}",
            "model > rules (else not published)", f["auc"] > f["rule_auc"]),
        Row("held-out calibration: Brier score / expected calibration error (deciles)",
            f"{f['brier']:.3f} / {f['ece']:.3f}", "—", "—", "—", None),
    ]  # fmt: skip
    result.notes.append(
        f"Generating the leads took {f['generate_s']:.1f} s (not in the training time); the "
        f"child ran {measured.seconds:.1f} s in all. 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end on this shared 2-core machine."
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--child"]:
        child(int(args[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parsed = parser.parse_args(args)
    result = run(parsed.leads)
    result.details += [f"Command: `{COMMAND}`. Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."]
    result.details += [f"Machine: {line.removeprefix('- ')}" for line in describe(None)][:2]
    print(result.markdown())
    if parsed.write:
        replace_section(KEY, result.markdown())
        print(f"wrote the {TITLE} section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
