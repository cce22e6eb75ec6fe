"""Scoring's commands: ``zeroparty score``, ``model train`` and ``dispatch``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from zeroparty.cli_support import lead_id, opened_database
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import cli as scoring_cli

    with opened_database(settings) as database:
        if args.explain:
            subject_id = lead_id(database, args.explain)
            if subject_id is None:
                return 2
            return scoring_cli.print_explanation(database, subject_id, args.explain)
        return scoring_cli.rescore_with_progress(database, quiet=args.quiet)


def cmd_model_train(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.predictive import InsufficientData
    from scoring.training import format_report, train_from_database

    with opened_database(settings) as database:
        try:
            report = train_from_database(database, seed=args.seed)
        except InsufficientData as exc:
            print(f"not trained, nothing stored: too few outcomes ({exc})", file=sys.stderr)
            return 1
    print("\n".join(format_report(report)))
    return 0 if report.published else 1


def cmd_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import cli as scoring_cli

    with opened_database(settings) as database:
        return scoring_cli.dispatch_once(database, settings, dead=args.dead_letters)


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    score = commands.add_parser("score", help="rescore permissioned leads; explain one score")
    score.add_argument("--explain", metavar="EMAIL", help="print every point of this lead")
    score.add_argument("--quiet", action="store_true", help="no progress output")
    score.set_defaults(handler=cmd_score)
    model = commands.add_parser("model", help="the predictive score").add_subparsers(
        dest="model_command", required=True, metavar="ACTION"
    )
    model_train = model.add_parser(
        "train",
        help="train on recorded outcomes; publish only if better than the rule score (else exit 1)",
    )
    model_train.add_argument(
        "--seed", type=int, default=0, help="seed of the held-out split (default 0)"
    )
    model_train.set_defaults(handler=cmd_model_train)
    dispatch = commands.add_parser("dispatch", help="deliver due webhooks to the CRM now")
    dispatch.add_argument(
        "--dead-letters", action="store_true", help="list webhooks given up on instead"
    )
    dispatch.set_defaults(handler=cmd_dispatch)
