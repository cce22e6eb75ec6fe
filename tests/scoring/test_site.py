"""The ``[scoring]`` table of site.toml: the demo model loads; invalid models are
rejected with file, key path and reason, and nothing of the file is applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from scoring.services import active_model
from scoring.stages import Stage
from tests.scoring.conftest import DEMO_SITE
from zeroparty.cli import main
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database


def _versions(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(text("SELECT count(*) FROM scoring_models")).scalar_one())


def test_the_demo_model_is_loaded_with_the_issue_numbers(database: Database) -> None:
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    model = active.model
    assert model.purpose == "profiling"
    assert dict(model.thresholds) == {Stage.MQL: 60, Stage.SQL: 80}
    assert {r.name: r.points for r in model.fit} == {
        "company-size": 20,
        "decision-maker": 15,
        "industry": 10,
        "bant-budget": 10,
        "bant-authority": 10,
    }
    assert {r.name: (r.points, r.min_count) for r in model.behaviour} == {
        "pricing-page": (20, 1),
        "case-study": (10, 1),
        "webinar": (15, 1),
        "emails-opened": (5, 3),
        "feature-used": (5, 1),
        "usage-limit": (25, 1),
    }


def test_an_unchanged_model_is_not_a_new_version(
    load_model: Callable[..., list[str]], database: Database
) -> None:
    assert not any("scoring" in c for c in load_model())
    changes = load_model(("MQL = 60", "MQL = 65"))
    assert any("scoring model: version 2" in c for c in changes)
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    assert dict(active.model.thresholds)[Stage.MQL] == 65


BAD_MODELS = [
    (("MQL = 60", "MQL = 90"), "scoring.thresholds.SQL", "out of order"),
    (("MQL = 60", "Customer = 60"), "scoring.thresholds.Customer", "not a threshold stage"),
    (("MQL = 60", "MQL = -1"), "scoring.thresholds.MQL", "above 0"),
    (('field = "company_size"', 'field = "revenue"'), "scoring.fit[0].field", "no form or quiz"),
    (
        ('in = ["software", "finance", "retail"]', "range = [10, 1]"),
        "scoring.fit[2].range",
        "low <= high",
    ),
    (("pattern = '", "pattern = '(unclosed"), "scoring.fit[1].pattern", "regular expression"),
    (
        ('in = ["51-200", "201-1000", "1001+"]', 'in = ["51-200"]\nequals = "x"'),
        "scoring.fit[0].name",
        "exactly one",
    ),
    (
        ('purpose = "profiling"\nhandoff', 'purpose = "newsletters"\nhandoff'),
        "scoring.purpose",
        "no purpose",
    ),
    (
        ('purpose = "profiling"\nhandoff', 'purpose = "sale_sharing"\nhandoff'),
        "scoring.purpose",
        "opt-in",
    ),
    (('handoff = ["MQL", "SQL"]', 'handoff = ["Visitor"]'), "scoring.handoff", "stages"),
    (('answer = "large"', 'answer = "huge"'), "scoring.quiz[0].answer", "no answer"),
    (('question = "volume"', 'question = "budget"'), "scoring.quiz[0].question", "no quiz"),
    (("min_count = 3 ", "min_count = 0 "), "scoring.behaviour[3].min_count", "whole number"),
    (('name = "webinar"', 'name = "pricing-page"'), "scoring", "more than once"),
    (
        ('event = "webinar_attended"', 'event = "Webinar Attended"'),
        "scoring.behaviour[2].event",
        "required",
    ),
    (("[scoring.thresholds]", "colour = 1\n[scoring.thresholds]"), "scoring.colour", "unknown"),
    (
        ("points = 20\nwindow_days = 90", "points = 20\nwindow_days = 0"),
        "scoring.behaviour[0].window_days",
        "number",
    ),
]


@pytest.mark.parametrize(("replacement", "where", "why"), BAD_MODELS)
def test_invalid_models_are_rejected_and_nothing_is_loaded(
    load_model: Callable[..., list[str]],
    database: Database,
    replacement: tuple[str, str],
    where: str,
    why: str,
) -> None:
    before = _versions(database)
    form_title = ('title = { en = "Talk to Northwind"', 'title = { en = "Changed too"')
    with pytest.raises(SiteConfigError) as raised:
        load_model(replacement, form_title)
    problems = dict(raised.value.problems)
    key = f"site.toml: {where}"
    assert key in problems, problems
    assert why in problems[key]
    assert _versions(database) == before
    with database.read() as session:
        title = session.execute(
            text("SELECT count(*) FROM capture_definitions WHERE definition LIKE '%Changed too%'")
        ).scalar_one()
    assert title == 0, "nothing of the file was applied"


def test_site_load_names_the_file_and_key(
    cli_env: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        DEMO_SITE.read_text(encoding="utf-8").replace("SQL = 80", "SQL = 50"), encoding="utf-8"
    )
    assert main(["site", "load", str(path)]) == 2
    err = capsys.readouterr().err
    assert "site.toml: scoring.thresholds.SQL: thresholds out of order" in err


def test_model_versions_are_append_only(database: Database) -> None:
    from sqlalchemy.exc import DBAPIError

    for statement in ("UPDATE scoring_models SET sha256 = 'x'", "DELETE FROM scoring_models"):
        with pytest.raises(DBAPIError, match="append-only"), database.write() as session:
            session.execute(text(statement))
    assert _versions(database) == 1
