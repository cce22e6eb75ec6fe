"""``zeroparty site load FILE --check`` previews what a new model does to the leads
scored so far (forward moves by their current scores) and changes nothing; the real
load then takes effect through the scheduled pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scoring.upkeep import run_upkeep
from tests.scoring.conftest import DEMO_SITE, rows
from zeroparty.cli import main
from zeroparty.db import Database

FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer"}  # 35 points


def _site(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = DEMO_SITE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "new-site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _stages(database: Database) -> list[tuple[str, float]]:
    return [
        (r.stage, r.score)
        for r in rows(database, "SELECT stage, score FROM scoring_leads ORDER BY score")
    ]


def test_check_previews_the_moves_and_changes_nothing(
    cli_env: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
) -> None:
    submit("near@example.com", **FIT)
    events("near@example.com", "pricing_page_viewed")  # 55
    submit("far@example.com", **FIT)  # 35
    capsys.readouterr()
    path = _site(tmp_path, ("MQL = 60", "MQL = 50"))
    assert main(["site", "load", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert (
        "would change: scoring preview: by their current scores, 1 lead(s) would move "
        "forward (Lead → MQL: 1)"
    ) in out
    assert "rules changed" not in out
    assert rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n == 1
    assert _stages(database) == [("Lead", 35), ("Lead", 55)]
    assert main(["site", "load", str(path)]) == 0
    assert "changed: scoring preview" in capsys.readouterr().out
    run_upkeep(database)
    assert _stages(database) == [("Lead", 35), ("MQL", 55)]


def test_a_rule_change_is_named_in_the_preview(
    cli_env: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    submit: Callable[..., Any],
) -> None:
    submit("some@example.com", **FIT)
    capsys.readouterr()
    path = _site(tmp_path, ('in = ["51-200", "201-1000", "1001+"]\npoints = 20',
                            'in = ["51-200", "201-1000", "1001+"]\npoints = 30'))  # fmt: skip
    assert main(["site", "load", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "0 lead(s) would move forward; rules changed too" in out
