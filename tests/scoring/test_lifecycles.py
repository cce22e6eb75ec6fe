"""Lifecycles in site.toml (``[scoring.lifecycle]``): the default chain unchanged, bad
chains refused with the key path and nothing changed, and a change of chain that moves
the leads holding dropped stages: previewed by ``site load --check``, refused without a
move for a held stage, recorded as a stage change with its reason when it runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from scoring import lifecycle_site
from scoring.lifecycle import DEFAULT, Lifecycle
from scoring.services import active_model
from scoring.upkeep import run_upkeep
from tests.console.conftest import log_in, make_staff
from tests.scoring.conftest import DEMO_SITE, rows
from zeroparty.app import create_app
from zeroparty.cli import main
from zeroparty.config_errors import ConfigProblems, SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.site import load_site

FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer"}  # 35 points
DEMO_THRESHOLDS = "[scoring.thresholds]\nMQL = 60\nSQL = 80\n"
DEMO_HANDOFF = 'handoff = ["MQL", "SQL"]'
CHAIN = """[scoring.lifecycle]
stages = ["Contact", "Lead", "Prospect", "SQL"]
marketing = "Prospect"
sales = "SQL"
"""
NEW_THRESHOLDS = "[scoring.thresholds]\nLead = 30\nProspect = 60\nSQL = 80\n"
NEW_SLA = '[scoring.sla]\nProspect = "72h"\nSQL = "24h"\n'


def _demo() -> str:
    text = DEMO_SITE.read_text(encoding="utf-8")
    assert DEMO_THRESHOLDS in text
    assert DEMO_HANDOFF in text
    return text


def _site(tmp_path: Path, lifecycle: str, thresholds: str = NEW_THRESHOLDS) -> Path:
    """The demo site with ``lifecycle`` added and its thresholds, hand-off and SLA
    (which name MQL) replaced."""
    text = _demo().replace(DEMO_THRESHOLDS, lifecycle + "\n" + thresholds)
    text = text.replace(DEMO_HANDOFF, 'handoff = ["Prospect", "SQL"]')
    text = _without_sla(text)
    path = tmp_path / "lifecycle-site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _without_sla(text: str) -> str:
    start = text.find("[scoring.sla]")
    if start < 0:
        return text
    end = text.find("\n[", start + 1)
    return text[:start] + NEW_SLA + text[end + 1 :]


def _versions(database: Database) -> int:
    return int(rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n)


def _stages(database: Database) -> list[tuple[str, str]]:
    found = rows(
        database,
        "SELECT p.email, l.stage FROM scoring_leads l JOIN subject_profiles p "
        "ON p.subject_id = l.subject_id ORDER BY p.email",
    )
    return [(r.email, r.stage) for r in found]


def test_without_a_lifecycle_the_model_is_the_fixed_chain(database: Database) -> None:
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    assert active.model.lifecycle == DEFAULT
    assert DEFAULT.stages == ("Lead", "MQL", "SQL", "Opportunity", "Customer")
    assert (DEFAULT.marketing, DEFAULT.sales) == ("MQL", "SQL")
    assert "lifecycle" not in active.model.as_json()  # the hash it always had


def test_the_default_chain_written_out_changes_nothing_but_the_hash(
    database: Database, tmp_path: Path
) -> None:
    """The fixed chain spelled out loads (a new model version) and behaves the same."""
    chain = (
        "[scoring.lifecycle]\n"
        'stages = ["Lead", "MQL", "SQL", "Opportunity", "Customer"]\n'
        'by_hand = ["Customer"]\n'
    )
    path = tmp_path / "site.toml"
    path.write_text(_demo().replace(DEMO_THRESHOLDS, chain + DEMO_THRESHOLDS), encoding="utf-8")
    changes = load_site(database, path).changes
    assert any(
        c.startswith("lifecycle: Lead → MQL → SQL") and "no lead moves" in c for c in changes
    )
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    assert active.model.lifecycle.stages == DEFAULT.stages
    assert active.model.lifecycle.marketing == "MQL"
    assert active.model.handoff == ("MQL", "SQL")


BAD_CHAINS = [
    pytest.param(
        '[scoring.lifecycle]\nstages = ["Contact", "Lead", "Contact", "SQL"]\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.stages[2]",
        "a cycle: the chain comes back to Contact (Contact → Lead → Contact)",
        id="cycle",
    ),
    pytest.param(
        '[scoring.lifecycle]\nstages = ["Contact", "Lead", "lead", "SQL"]\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.stages[2]",
        "duplicate stage name: 'lead' is 'Lead'",
        id="duplicate",
    ),
    pytest.param(
        '[scoring.lifecycle]\nstages = ["Contact"]\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.stages",
        "list of 2 to 20 stage names",
        id="one-stage",
    ),
    pytest.param(
        '[scoring.lifecycle]\nstages = ["Contact", "Sales qualified"]\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.stages[1]",
        "a stage name is a letter",
        id="bad-name",
    ),
    pytest.param(
        CHAIN,
        "[scoring.thresholds]\nLead = 30\nMQL = 60\nSQL = 80\n",
        "scoring.thresholds.MQL",
        "not a threshold stage (one of Lead, Prospect, SQL)",
        id="unknown-threshold-stage",
    ),
    pytest.param(
        CHAIN,
        "[scoring.thresholds]\nLead = 30\nProspect = 90\nSQL = 80\n",
        "scoring.thresholds.SQL",
        "must be above Prospect (90), as it comes later in the lifecycle",
        id="threshold-out-of-order",
    ),
    pytest.param(
        CHAIN.replace('sales = "SQL"', 'sales = "Opportunity"'),
        NEW_THRESHOLDS,
        "scoring.lifecycle.sales",
        "no stage 'Opportunity' in the chain (Contact → Lead → Prospect → SQL)",
        id="hand-off-not-in-chain",
    ),
    pytest.param(
        CHAIN.replace('sales = "SQL"', 'sales = "Contact"'),
        NEW_THRESHOLDS,
        "scoring.lifecycle.sales",
        "where every lead starts",
        id="hand-off-at-the-start",
    ),
    pytest.param(
        CHAIN.replace('marketing = "Prospect"', 'marketing = "SQL"').replace(
            'sales = "SQL"', 'sales = "Prospect"'
        ),
        NEW_THRESHOLDS,
        "scoring.lifecycle.marketing",
        "must come before the sales hand-off",
        id="marketing-after-sales",
    ),
    pytest.param(
        CHAIN + 'by_hand = ["Customer"]\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.by_hand[0]",
        "no stage 'Customer'",
        id="by-hand-unknown",
    ),
    pytest.param(
        CHAIN + 'by_hand = ["SQL"]\n',
        NEW_THRESHOLDS,
        "scoring.thresholds.SQL",
        "not a threshold stage (one of Lead, Prospect)",
        id="threshold-on-a-by-hand-stage",
    ),
    pytest.param(
        CHAIN + '[scoring.lifecycle.moves]\nMQL = "Opportunity"\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.moves.MQL",
        "no stage 'Opportunity' in the chain",
        id="move-to-unknown",
    ),
    pytest.param(
        CHAIN + '[scoring.lifecycle.moves]\nLead = "Contact"\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.moves.Lead",
        "Lead is in the chain",
        id="move-of-a-kept-stage",
    ),
    pytest.param(
        CHAIN + 'order = "reverse"\n',
        NEW_THRESHOLDS,
        "scoring.lifecycle.order",
        "unknown key",
        id="unknown-key",
    ),
]


@pytest.mark.parametrize(("lifecycle", "thresholds", "where", "why"), BAD_CHAINS)
def test_bad_lifecycles_are_refused_and_nothing_changes(
    database: Database, tmp_path: Path, lifecycle: str, thresholds: str, where: str, why: str
) -> None:
    before = _versions(database)
    with pytest.raises(SiteConfigError) as raised:
        load_site(database, _site(tmp_path, lifecycle, thresholds))
    problems = dict(raised.value.problems)
    key = f"lifecycle-site.toml: {where}"
    assert key in problems, problems
    assert why in problems[key]
    assert _versions(database) == before


def test_stages_elsewhere_in_the_model_are_checked_against_the_chain(
    database: Database, tmp_path: Path
) -> None:
    """Stage events, hand-off, SLA and next-action rules name stages of the chain."""
    text = _site(tmp_path, CHAIN).read_text(encoding="utf-8")
    text = text.replace(
        "[scoring.thresholds]",
        '[scoring.stage_events]\nMQL = ["demo_requested"]\n\n[scoring.thresholds]',
    ).replace('handoff = ["Prospect", "SQL"]', 'handoff = ["MQL"]')
    text += '\n[[scoring.next_action]]\nname = "n"\naction = "Call"\nstages = ["Opportunity"]\n'
    text = text.replace('Prospect = "72h"', 'Customer = "72h"')
    path = tmp_path / "lifecycle-site.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SiteConfigError) as raised:
        load_site(database, path)
    problems = dict(raised.value.problems)
    assert (
        "not a stage an event can reach (one of Lead, Prospect, SQL)"
        in problems["lifecycle-site.toml: scoring.stage_events.MQL"]
    )
    assert "among Lead, Prospect, SQL" in problems["lifecycle-site.toml: scoring.handoff"]
    assert "not a hand-off stage" in problems["lifecycle-site.toml: scoring.sla.Customer"]
    assert (
        "no stage 'Opportunity'" in problems["lifecycle-site.toml: scoring.next_action[0].stages"]
    )


def test_a_dropped_stage_leads_hold_needs_a_move(
    database: Database,
    tmp_path: Path,
    submit: Callable[..., Any],
    events: Callable[..., Any],
) -> None:
    submit("mql@example.com", **FIT)
    events("mql@example.com", "pricing_page_viewed", "case_study_downloaded")  # 65: MQL
    assert _stages(database) == [("mql@example.com", "MQL")]
    before = _versions(database)
    changes_before = rows(database, "SELECT count(*) AS n FROM scoring_stage_changes")[0].n
    with pytest.raises(SiteConfigError) as raised:
        load_site(database, _site(tmp_path, CHAIN))
    problems = dict(raised.value.problems)
    why = problems["lifecycle-site.toml: scoring.lifecycle.moves"]
    assert "1 lead(s) are at stage MQL" in why
    assert "Contact → Lead → Prospect → SQL" in why
    assert 'MQL = "…"' in why
    assert _versions(database) == before
    assert _stages(database) == [("mql@example.com", "MQL")]
    assert rows(database, "SELECT count(*) AS n FROM scoring_stage_changes")[0].n == changes_before


def test_check_previews_the_moves_then_the_load_records_them(
    cli_env: object,
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
) -> None:
    submit("mql@example.com", **FIT)
    events("mql@example.com", "pricing_page_viewed", "case_study_downloaded")  # 65: MQL
    assert api.post("/api/leads/ack", json={"email": "mql@example.com"}).status_code == 201
    submit("sql@example.com", **FIT)
    events("sql@example.com", "pricing_page_viewed", "webinar_attended")  # 70
    moved = {"email": "sql@example.com", "stage": "SQL", "reason": "called us"}
    assert api.post("/api/leads/stage", json=moved).status_code == 200
    submit("lead@example.com", **FIT)  # 35: Lead
    moves = '[scoring.lifecycle.moves]\nMQL = "Prospect"\nSQL = "SQL"\n'
    # SQL is kept by name, so it cannot be moved: fix that first.
    assert main(["site", "load", str(_site(tmp_path, CHAIN + moves)), "--check"]) == 2
    assert "scoring.lifecycle.moves.SQL: SQL is in the chain" in capsys.readouterr().err
    path = _site(tmp_path, CHAIN + '[scoring.lifecycle.moves]\nMQL = "Prospect"\n')
    before = _stages(database)
    assert main(["site", "load", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    # The leads at the old first stage go to the new one; MQL as the moves say.
    assert (
        "would change: lifecycle: Contact → Lead → Prospect → SQL (was Lead → MQL → SQL → "
        "Opportunity → Customer); 2 lead(s) move (Lead → Contact: 1, MQL → Prospect: 1)"
    ) in out
    # Then the thresholds' preview, from the moved stages: 35 points make a Lead (30);
    # the Prospect at 65 and the SQL stay.
    assert "by their current scores, 1 lead(s) would move forward (Contact → Lead: 1)" in out
    assert _stages(database) == before
    assert _versions(database) == 1
    assert main(["site", "load", str(path)]) == 0
    out = capsys.readouterr().out
    assert "changed: lifecycle: Contact → Lead → Prospect → SQL" in out
    assert _stages(database) == [
        ("lead@example.com", "Contact"),
        ("mql@example.com", "Prospect"),
        ("sql@example.com", "SQL"),
    ]
    first = api.get("/api/leads/score", params={"email": "lead@example.com"}).json()
    assert first["stage_changes"][-1]["reason"] == (
        "lifecycle changed to Contact → Lead → Prospect → SQL: its first stage is Contact, "
        "moved from Lead, the first stage before"
    )
    # The scheduled pass rescores every lead with the new model: 35 points, a Lead.
    run_upkeep(database)
    assert _stages(database)[0] == ("lead@example.com", "Lead")
    body = api.get("/api/leads/score", params={"email": "mql@example.com"}).json()
    assert body["stage"] == "Prospect"
    last = body["stage_changes"][-1]
    assert (last["from"], last["to"], last["actor"]) == ("MQL", "Prospect", "system:lifecycle")
    assert "stage MQL is not in it, moved to Prospect" in last["reason"]
    # The same entry, renamed: its acknowledgement carries over (no new SLA clock).
    again = api.post("/api/leads/ack", json={"email": "mql@example.com"})
    assert (again.status_code, again.json()["stage"]) == (200, "Prospect")
    # Loading the same file again changes nothing; the moves it keeps are harmless.
    assert main(["site", "load", str(path)]) == 0
    assert "valid, nothing changed" in capsys.readouterr().out
    # The API and the console speak the new chain.
    listed = api.get("/api/leads", params={"stage": "Prospect"}).json()["leads"]
    assert [lead["email"] for lead in listed] == ["mql@example.com"]


def test_the_console_uses_the_chain_in_force(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    submit: Callable[..., Any],
    events: Callable[..., Any],
) -> None:
    """The lead list's stage filter, each lead's stage, the reports' stages and funnel,
    and the accounts filter name the stages of the lifecycle loaded."""
    submit("mql@acme-corp.example", **FIT)
    events("mql@acme-corp.example", "pricing_page_viewed", "case_study_downloaded")  # MQL
    submit("new@acme-corp.example")  # unscored: at the first stage
    load_site(database, _site(tmp_path, CHAIN + '[scoring.lifecycle.moves]\nMQL = "Prospect"\n'))
    make_staff(database, "m@staff.example", "marketer")
    with TestClient(create_app(settings, database)) as client:
        log_in(client, "m@staff.example")
        listed = client.get("/console/leads", params={"stage": "prospect"})
        assert listed.status_code == 200
        assert "mql@acme-corp.example" in listed.text
        assert "new@acme-corp.example" not in listed.text
        first = client.get("/console/leads", params={"stage": "Contact"})
        assert "new@acme-corp.example" in first.text
        assert "mql@acme-corp.example" not in first.text
        refused = client.get("/console/leads", params={"stage": "MQL"})
        assert refused.status_code == 422
        assert "one of Contact, Lead, Prospect, SQL" in refused.text
        reports = client.get("/console/reports").text
        assert "Funnel Contact → Lead → Prospect → SQL" in reports
        assert "<td>Prospect</td><td>1</td>" in reports
        accounts = client.get("/console/accounts", params={"stage": "Prospect"})
        assert accounts.status_code == 200
        assert "acme-corp.example" in accounts.text
        assert client.get("/console/accounts", params={"stage": "MQL"}).status_code == 422


NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True)


@given(st.lists(NAMES, min_size=2, max_size=20, unique_by=str.casefold))
def test_any_chain_of_distinct_names_parses_in_order(stages: list[str]) -> None:
    problems = ConfigProblems()
    lifecycle, moves = lifecycle_site.parse({"lifecycle": {"stages": stages}}, problems)
    assert not problems, problems.items
    assert lifecycle.stages == tuple(stages)
    assert [lifecycle.rank(s) for s in stages] == list(range(1, len(stages) + 1))
    assert all(lifecycle.parse(s.upper()) == s for s in stages)
    assert Lifecycle.from_json(lifecycle.as_json()) == lifecycle
    assert lifecycle.threshold_stages == tuple(stages[1:]) == lifecycle.event_stages
    assert moves == ()


@given(st.lists(NAMES, min_size=2, max_size=19, unique_by=str.casefold), st.data())
def test_a_chain_that_repeats_a_stage_is_refused(stages: list[str], data: st.DataObject) -> None:
    again = data.draw(st.sampled_from(stages))
    where = data.draw(st.integers(min_value=stages.index(again) + 1, max_value=len(stages)))
    chain = [*stages[:where], again, *stages[where:]]
    problems = ConfigProblems()
    lifecycle, _ = lifecycle_site.parse({"lifecycle": {"stages": chain}}, problems)
    assert lifecycle == DEFAULT  # stands in while the file is refused
    assert [path for path, _ in problems.items] == [f"scoring.lifecycle.stages[{where}]"]
    assert "a cycle: the chain comes back to " + again in problems.items[0][1]


def test_the_openapi_enums_follow_the_lifecycle(
    app_client: TestClient, database: Database, tmp_path: Path
) -> None:
    schemas = app_client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Stage"]["enum"] == ["Visitor", "Lead", "MQL", "SQL", "Opportunity", "Customer"]
    assert schemas["HandoffStage"]["enum"] == ["MQL", "SQL", "Opportunity", "Customer"]
    load_site(database, _site(tmp_path, CHAIN))
    schemas = app_client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Stage"]["enum"] == ["Contact", "Lead", "Prospect", "SQL"]
    assert schemas["HandoffStage"]["enum"] == ["Lead", "Prospect", "SQL"]
    paths = app_client.get("/openapi.json").json()["paths"]
    [stage] = [p for p in paths["/api/leads"]["get"]["parameters"] if p["name"] == "stage"]
    assert stage["schema"] == {"$ref": "#/components/schemas/HandoffStage"}


def test_a_by_hand_stage_is_reached_by_people_only(
    database: Database,
    tmp_path: Path,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
) -> None:
    chain = CHAIN.replace('"SQL"]', '"SQL", "Customer"]') + 'by_hand = ["Customer"]\n'
    load_site(database, _site(tmp_path, chain))
    submit("won@example.com", **FIT)
    events("won@example.com", "pricing_page_viewed", "case_study_downloaded", "webinar_attended")
    body = api.get("/api/leads/score", params={"email": "won@example.com"}).json()
    assert (body["score"], body["stage"]) == (80, "SQL")  # thresholds stop before Customer
    move = {"email": "won@example.com", "stage": "customer", "reason": "signed"}
    moved = api.post("/api/leads/stage", json=move)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["from"], moved.json()["stage"]) == ("SQL", "Customer")
    last = api.get("/api/leads/score", params={"email": "won@example.com"}).json()
    assert last["stage_changes"][-1]["to"] == "Customer"
    assert last["stage_changes"][-1]["actor"].startswith("api:")


def test_back_to_the_fixed_chain_with_moves_alone(
    database: Database,
    tmp_path: Path,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
) -> None:
    load_site(database, _site(tmp_path, CHAIN))
    submit("prospect@example.com", **FIT)
    events("prospect@example.com", "pricing_page_viewed", "case_study_downloaded")  # 65
    submit("contact@example.com", industry="software")  # 10: a Contact
    assert dict(_stages(database)) == {
        "contact@example.com": "Contact",
        "prospect@example.com": "Prospect",
    }
    before = _versions(database)
    demo = tmp_path / "demo.toml"
    demo.write_text(_demo(), encoding="utf-8")
    with pytest.raises(SiteConfigError) as raised:
        load_site(database, demo)
    why = dict(raised.value.problems)["demo.toml: scoring.lifecycle.moves"]
    assert "1 lead(s) are at stage Prospect" in why
    assert _versions(database) == before
    demo.write_text(
        _demo().replace(
            DEMO_THRESHOLDS, '[scoring.lifecycle.moves]\nProspect = "MQL"\n\n' + DEMO_THRESHOLDS
        ),
        encoding="utf-8",
    )
    changes = load_site(database, demo).changes
    assert (
        "lifecycle: Lead → MQL → SQL → Opportunity → Customer (was Contact → Lead → Prospect "
        "→ SQL); 2 lead(s) move (Contact → Lead: 1, Prospect → MQL: 1)"
    ) in changes
    assert dict(_stages(database)) == {
        "contact@example.com": "Lead",
        "prospect@example.com": "MQL",
    }
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    assert active.model.lifecycle == DEFAULT
    body = api.get("/api/leads/score", params={"email": "contact@example.com"}).json()
    assert body["stage_changes"][-1]["reason"] == (
        "lifecycle changed to Lead → MQL → SQL → Opportunity → Customer: stage Contact (the "
        "first stage before) is not in it, moved to its first stage, Lead"
    )


def test_moves_alone_cannot_name_roles(database: Database, tmp_path: Path) -> None:
    demo = tmp_path / "demo.toml"
    demo.write_text(
        _demo().replace(
            DEMO_THRESHOLDS, '[scoring.lifecycle]\nsales = "SQL"\n\n' + DEMO_THRESHOLDS
        ),
        encoding="utf-8",
    )
    with pytest.raises(SiteConfigError) as raised:
        load_site(database, demo)
    assert dict(raised.value.problems)["demo.toml: scoring.lifecycle.stages"] == (
        "is required with sales"
    )


def test_the_example_chain_loads_over_the_demos_leads(
    cli_env: object,
    database: Database,
    capsys: pytest.CaptureFixture[str],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
) -> None:
    example = DEMO_SITE.parent / "examples" / "contact-lead-prospect-sql.toml"
    submit("mql@example.com", **FIT)
    events("mql@example.com", "pricing_page_viewed", "case_study_downloaded")  # 65: MQL
    submit("won@example.com", **FIT)
    won = {"email": "won@example.com", "stage": "Customer", "reason": "signed"}
    assert api.post("/api/leads/stage", json=won).status_code == 200
    submit("lead@example.com", industry="software")  # 10: Lead
    capsys.readouterr()
    assert main(["site", "load", str(example), "--check"]) == 0
    out = capsys.readouterr().out
    assert "3 lead(s) move (Lead → Contact: 1, MQL → Prospect: 1, Customer → SQL: 1)" in out, out
    assert dict(_stages(database)) == {
        "lead@example.com": "Lead",
        "mql@example.com": "MQL",
        "won@example.com": "Customer",
    }
    assert main(["site", "load", str(example)]) == 0
    assert dict(_stages(database)) == {
        "lead@example.com": "Contact",
        "mql@example.com": "Prospect",
        "won@example.com": "SQL",
    }
