"""Forms and quizzes in ``site.toml``: checked with every problem located, published as
immutable versions, and submissions tied to the version they were made on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError
from starlette.testclient import TestClient

from capture.models import DefinitionVersion, Submission
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database

NEW_TITLE = 'title = "The Northwind newsletter, now weekly"'


def _versions(database: Database, slug: str) -> list[int]:
    with database.read() as session:
        return list(
            session.execute(
                select(DefinitionVersion.version)
                .where(DefinitionVersion.slug == slug)
                .order_by(DefinitionVersion.version)
            ).scalars()
        )


def test_demo_site_publishes_version_one(database: Database) -> None:
    for slug in ("contact", "newsletter", "analytics-fit"):
        assert _versions(database, slug) == [1]


def test_unchanged_definitions_make_no_version(
    database: Database, load_toml: Callable[..., list[str]]
) -> None:
    assert [c for c in load_toml("") if c.startswith(("form", "quiz"))] == []


def test_a_changed_form_is_a_new_version_and_old_tokens_still_submit(
    app_client: TestClient,
    render: Callable[..., str],
    database: Database,
    load_toml: Callable[..., list[str]],
) -> None:
    old_token = render("newsletter")
    changes = load_toml("", replace=('title = "The Northwind newsletter"', NEW_TITLE))
    assert any(c.startswith("form newsletter: version 2") for c in changes)
    assert _versions(database, "newsletter") == [1, 2]
    assert "now weekly" in app_client.get("/f/newsletter").text
    response = app_client.post(
        "/f/newsletter", data={"email": "kim@example.com", "_rt": old_token},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303
    with database.read() as session:
        submission = session.execute(select(Submission)).scalar_one()
        version = session.get_one(DefinitionVersion, submission.definition_id)
    assert version.version == 1, "the submission names the version that was shown"


def test_published_versions_cannot_be_changed(database: Database) -> None:
    with pytest.raises(DatabaseError), database.write() as session:
        session.execute(text("UPDATE capture_definitions SET slug = 'x'"))


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ('[forms.x]\ntitle = "X"\n', "forms.x.fields"),
        ('[forms.x]\ntitle = "X"\nconsent = ["nope"]\n[[forms.x.fields]]\nname = "email"\n'
         'type = "email"\n', "forms.x.consent"),
        ('[forms.x]\ntitle = "X"\n[[forms.x.fields]]\nname = "email"\ntype = "email"\n'
         '[[forms.x.fields]]\nname = "age"\ntype = "slider"\n', "forms.x.fields[1].type"),
        ('[forms.x]\ntitle = "X"\n[[forms.x.fields]]\nname = "email"\ntype = "email"\n'
         '[[forms.x.fields]]\nname = "size"\ntype = "choice"\n', "forms.x.fields[1].choices"),
        ('[forms.x]\ntitle = "X"\nallowed_origins = ["evil.example/path"]\n'
         '[[forms.x.fields]]\nname = "email"\ntype = "email"\n', "forms.x.allowed_origins"),
        ('[forms.x]\ntitle = "X"\ncolour = "red"\n[[forms.x.fields]]\nname = "email"\n'
         'type = "email"\n', "forms.x.colour"),
        ('[forms.X_Y]\ntitle = "X"\n[[forms.X_Y.fields]]\nname = "email"\ntype = "email"\n',
         "forms.X_Y"),
        ('[quizzes.q]\ntitle = "Q"\n[[quizzes.q.steps]]\nkey = "a"\n'
         '[[quizzes.q.steps.questions]]\nkey = "k"\ntext = "?"\n'
         'answers = [{ value = "v", next = "a" }]\n[quizzes.q.outcomes.o]\ntitle = "O"\n'
         'text = "o"\n', "quizzes.q.steps[0].k.v.next"),
        ('[quizzes.q]\ntitle = "Q"\n[[quizzes.q.steps]]\nkey = "a"\n'
         '[[quizzes.q.steps.questions]]\nkey = "k"\ntext = "?"\n'
         'answers = [{ value = "v", outcome = "missing" }]\n[quizzes.q.outcomes.o]\n'
         'title = "O"\ntext = "o"\n', "quizzes.q.steps[0].k.v.outcome"),
    ],
)  # fmt: skip
def test_bad_definitions_are_refused_with_their_location(
    database: Database, load_toml: Callable[..., list[str]], extra: str, where: str
) -> None:
    with pytest.raises(SiteConfigError) as caught:
        load_toml(extra)
    assert any(where in place for place, _ in caught.value.problems), caught.value.problems
    assert _versions(database, "x") == []
