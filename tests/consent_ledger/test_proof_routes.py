"""The public transparency routes, through HTTP: checkpoints, the key, proofs.

Everything a client gets is checked the way an outsider would check it: notes with the
published key, proofs (base64-decoded) with the RFC 6962 verifiers of
:mod:`consent_ledger.proofs.merkle`, roots against a reference computed from the entries as
they were appended. Bad parameters get a 422 JSON error, never a 5xx.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from consent_ledger.proofs import merkle, transparency
from consent_ledger.proofs.checkpoints import (
    CheckpointSigner,
    parse_verifier_key,
    verify_checkpoint,
)
from tests.consent_ledger.test_tree import grow, prefix_roots, reference_leaves
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

SIZE = 300


@pytest.fixture
def leaves(database: Database) -> list[bytes]:
    """A ledger of 300 entries (a stored tile and a partial one); its leaf hashes."""
    return reference_leaves(grow(database, SIZE))


@pytest.fixture
def roots(leaves: list[bytes]) -> list[bytes]:
    return prefix_roots(leaves)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def stored_sizes(database: Database) -> list[int]:
    with database.read() as session:
        return [c.size for c in transparency.list_checkpoints(session.connection())]


def published_keys(client: TestClient) -> list[Any]:
    return [parse_verifier_key(line) for line in client.get("/ledger/key").text.splitlines()]


# --- GET /ledger/checkpoint ---------------------------------------------------------------


def test_no_checkpoint_for_an_empty_ledger(app_client: TestClient, database: Database) -> None:
    response = app_client.get("/ledger/checkpoint")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert stored_sizes(database) == []


def test_latest_checkpoint_is_signed_and_published(
    app_client: TestClient, database: Database, roots: list[bytes], settings: Settings
) -> None:
    response = app_client.get("/ledger/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-cache"
    head = verify_checkpoint(
        response.text, published_keys(app_client), origin=settings.ledger_origin
    )
    assert (head.size, head.root) == (SIZE, roots[SIZE])
    # Asked again with nothing new: the same note, nothing stored twice.
    assert app_client.get("/ledger/checkpoint").text == response.text
    assert stored_sizes(database) == [SIZE]


def test_latest_checkpoint_follows_the_schedule(
    database: Database, settings: Settings, leaves: list[bytes]
) -> None:
    every5 = dataclasses.replace(settings, checkpoint_every_entries=5, checkpoint_every_minutes=60)
    with TestClient(create_app(every5, database)) as client:
        first = client.get("/ledger/checkpoint").text
        grow(database, 4)
        assert client.get("/ledger/checkpoint").text == first  # not due: the latest still
        grow(database, 1)
        second = client.get("/ledger/checkpoint").text
    assert second != first
    assert verify_checkpoint(second, published_keys_for(every5)).size == SIZE + 5
    assert stored_sizes(database) == [SIZE + 5, SIZE]


def published_keys_for(settings: Settings) -> list[Any]:
    signer = transparency.load_signer(settings, create=False)
    return transparency.verifier_keys(settings, signer)


# --- GET /ledger/checkpoints --------------------------------------------------------------


@pytest.fixture
def history(database: Database, settings: Settings, app_client: TestClient) -> list[int]:
    """Seven checkpoints, at sizes 2, 4, … 14."""
    signer = transparency.load_signer(settings, create=False)
    for _ in range(7):
        grow(database, 2)
        assert transparency.make_checkpoint(database, settings, signer) is not None
    return [14, 12, 10, 8, 6, 4, 2]


def test_history_newest_first(
    app_client: TestClient, history: list[int], settings: Settings
) -> None:
    body = app_client.get("/ledger/checkpoints").json()
    assert [c["size"] for c in body["checkpoints"]] == history
    assert body["next_before"] is None
    keys = published_keys(app_client)
    for item in body["checkpoints"]:
        assert set(item) == {"size", "root", "key_name", "created_at", "note"}
        head = verify_checkpoint(item["note"], keys, origin=settings.ledger_origin)
        assert (head.size, b64(head.root)) == (item["size"], item["root"])
        assert item["key_name"] == settings.ledger_origin
        assert item["created_at"].endswith("Z")
        datetime.fromisoformat(item["created_at"])


def test_history_pages(app_client: TestClient, history: list[int]) -> None:
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        body = app_client.get("/ledger/checkpoints", params=params).json()
        seen += [c["size"] for c in body["checkpoints"]]
        assert len(body["checkpoints"]) <= 3
        if body["next_before"] is None:
            break
        params["before"] = body["next_before"]
    assert seen == history
    body = app_client.get("/ledger/checkpoints", params={"before": 9, "limit": 2}).json()
    assert [c["size"] for c in body["checkpoints"]] == [8, 6]
    assert app_client.get("/ledger/checkpoints", params={"before": 1}).json() == {
        "checkpoints": [],
        "next_before": None,
    }


def test_history_page_size_is_capped(app_client: TestClient, history: list[int]) -> None:
    response = app_client.get("/ledger/checkpoints", params={"limit": 10**6})
    assert response.status_code == 200
    assert [c["size"] for c in response.json()["checkpoints"]] == history


# --- GET /ledger/key ----------------------------------------------------------------------


def test_key_is_the_signing_key(app_client: TestClient, settings: Settings) -> None:
    response = app_client.get("/ledger/key")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    (line,) = response.text.splitlines()
    signer = transparency.load_signer(settings, create=False)
    assert line == signer.verifier_key.encode()
    assert response.text.endswith("\n")


def test_key_lists_retired_keys_after_the_current_one(
    database: Database, settings: Settings
) -> None:
    retired = CheckpointSigner.generate("old-name").verifier_key.encode()
    rotated = dataclasses.replace(settings, checkpoint_retired_keys=(retired,))
    with TestClient(create_app(rotated, database)) as client:
        lines = client.get("/ledger/key").text.splitlines()
    signer = transparency.load_signer(settings, create=False)
    assert lines == [signer.verifier_key.encode(), retired]


# --- GET /ledger/proof/inclusion ----------------------------------------------------------


INCLUSION_PAIRS = [(0, 1), (0, 2), (1, 2), (0, 255), (254, 255), (255, 256), (0, 256),
                   (256, 257), (100, 257), (0, SIZE), (137, SIZE), (SIZE - 1, SIZE)]  # fmt: skip


def test_inclusion_proofs_verify(
    app_client: TestClient, leaves: list[bytes], roots: list[bytes]
) -> None:
    for index, size in INCLUSION_PAIRS:
        response = app_client.get("/ledger/proof/inclusion", params={"index": index, "size": size})
        assert response.status_code == 200, (index, size)
        body = response.json()
        assert set(body) == {"index", "size", "leaf_hash", "root", "proof"}
        assert (body["index"], body["size"]) == (index, size)
        assert unb64(body["leaf_hash"]) == leaves[index]
        assert unb64(body["root"]) == roots[size]
        proof = [unb64(node) for node in body["proof"]]
        merkle.verify_inclusion(leaves[index], index, size, proof, roots[size])


def test_inclusion_proof_leads_to_the_published_checkpoint(
    app_client: TestClient, leaves: list[bytes]
) -> None:
    head = verify_checkpoint(app_client.get("/ledger/checkpoint").text, published_keys(app_client))
    body = app_client.get("/ledger/proof/inclusion", params={"index": 42, "size": head.size}).json()
    proof = [unb64(node) for node in body["proof"]]
    merkle.verify_inclusion(leaves[42], 42, head.size, proof, head.root)


# --- GET /ledger/proof/consistency --------------------------------------------------------


CONSISTENCY_PAIRS = [(1, 1), (1, 2), (1, SIZE), (2, 3), (7, 8), (100, 255), (255, 256),
                     (256, 257), (256, SIZE), (257, SIZE), (299, SIZE), (SIZE, SIZE)]  # fmt: skip


def test_consistency_proofs_verify(app_client: TestClient, roots: list[bytes]) -> None:
    for old, new in CONSISTENCY_PAIRS:
        response = app_client.get("/ledger/proof/consistency", params={"from": old, "to": new})
        assert response.status_code == 200, (old, new)
        body = response.json()
        assert set(body) == {"from", "to", "old_root", "new_root", "proof"}
        assert (body["from"], body["to"]) == (old, new)
        assert (unb64(body["old_root"]), unb64(body["new_root"])) == (roots[old], roots[new])
        proof = [unb64(node) for node in body["proof"]]
        merkle.verify_consistency(old, new, proof, roots[old], roots[new])
        if old == new:
            assert proof == []


@pytest.mark.usefixtures("leaves")
def test_consistency_between_two_published_checkpoints(
    app_client: TestClient, database: Database, settings: Settings
) -> None:
    keys = published_keys(app_client)
    old = verify_checkpoint(app_client.get("/ledger/checkpoint").text, keys)
    grow(database, 1000)
    always = dataclasses.replace(settings, checkpoint_every_minutes=0)
    with TestClient(create_app(always, database)) as client:
        new = verify_checkpoint(client.get("/ledger/checkpoint").text, keys)
    assert (old.size, new.size) == (SIZE, SIZE + 1000)
    params = {"from": old.size, "to": new.size}
    body = app_client.get("/ledger/proof/consistency", params=params).json()
    proof = [unb64(node) for node in body["proof"]]
    merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)


# --- bad parameters -----------------------------------------------------------------------


BAD_INCLUSION = [
    pytest.param({}, "index", id="nothing"),
    pytest.param({"size": 5}, "index", id="no-index"),
    pytest.param({"index": 1}, "size", id="no-size"),
    pytest.param({"index": -1, "size": 5}, "index", id="negative-index"),
    pytest.param({"index": 0, "size": -5}, "size", id="negative-size"),
    pytest.param({"index": "a", "size": 5}, "index", id="letters"),
    pytest.param({"index": "1.5", "size": 5}, "index", id="decimal"),
    pytest.param({"index": "", "size": 5}, "index", id="empty"),
    pytest.param({"index": " 1", "size": 5}, "index", id="space"),
    pytest.param({"index": "+1", "size": 5}, "index", id="plus"),
    pytest.param({"index": "0x1", "size": 5}, "index", id="hex"),
    pytest.param({"index": "1e2", "size": 500}, "index", id="exponent"),
    pytest.param({"index": "\u00b2", "size": 5}, "index", id="superscript-two"),
    pytest.param({"index": "\u0661", "size": 5}, "index", id="arabic-indic-one"),
    pytest.param({"index": "\uff11", "size": 5}, "index", id="fullwidth-one"),
    pytest.param({"index": "9" * 25, "size": 5}, "index", id="huge-index"),
    pytest.param({"index": 0, "size": 0}, "size", id="size-zero"),
    pytest.param({"index": 5, "size": 5}, "index", id="index-equals-size"),
    pytest.param({"index": 6, "size": 5}, "index", id="index-beyond-size"),
    pytest.param({"index": 0, "size": SIZE + 1}, "size", id="size-beyond-ledger"),
    pytest.param({"index": SIZE, "size": SIZE + 1}, "size", id="entry-beyond-ledger"),
    pytest.param({"index": 0, "size": 2**64}, "size", id="size-2-to-64"),
    pytest.param({"index": 0, "size": "9" * 20}, "size", id="size-20-digits"),
]


@pytest.mark.usefixtures("leaves")
@pytest.mark.parametrize(("params", "field"), BAD_INCLUSION)
def test_bad_inclusion_parameters_are_422(
    app_client: TestClient, database: Database, params: dict[str, Any], field: str
) -> None:
    response = app_client.get("/ledger/proof/inclusion", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["fields"]
    assert stored_sizes(database) == []


BAD_CONSISTENCY = [
    pytest.param({}, "from", id="nothing"),
    pytest.param({"to": 5}, "from", id="no-from"),
    pytest.param({"from": 1}, "to", id="no-to"),
    pytest.param({"from": -1, "to": 5}, "from", id="negative-from"),
    pytest.param({"from": 1, "to": -5}, "to", id="negative-to"),
    pytest.param({"from": 0, "to": 5}, "from", id="from-zero"),
    pytest.param({"from": "x", "to": 5}, "from", id="letters"),
    pytest.param({"from": 1, "to": "5.0"}, "to", id="decimal"),
    pytest.param({"from": "\u00b2", "to": 5}, "from", id="superscript-two"),
    pytest.param({"from": 1, "to": "\u0665"}, "to", id="arabic-indic-five"),
    pytest.param({"from": 6, "to": 5}, "from", id="from-after-to"),
    pytest.param({"from": 1, "to": SIZE + 1}, "to", id="to-beyond-ledger"),
    pytest.param({"from": SIZE + 1, "to": SIZE + 2}, "to", id="both-beyond-ledger"),
    pytest.param({"from": 1, "to": "9" * 25}, "to", id="huge-to"),
]


@pytest.mark.usefixtures("leaves")
@pytest.mark.parametrize(("params", "field"), BAD_CONSISTENCY)
def test_bad_consistency_parameters_are_422(
    app_client: TestClient, database: Database, params: dict[str, Any], field: str
) -> None:
    response = app_client.get("/ledger/proof/consistency", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["fields"]
    assert stored_sizes(database) == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": -1},
        {"limit": "ten"},
        {"before": 0},
        {"before": "x"},
        {"limit": "\u00b2"},
        {"before": "1.5"},
        {"before": str(2**63)},  # beyond a 64-bit integer: refused, not a driver error
        {"before": "9" * 20},
    ],
)
def test_bad_history_parameters_are_422(
    app_client: TestClient, history: list[int], params: dict[str, Any]
) -> None:
    response = app_client.get("/ledger/checkpoints", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert set(error["fields"]) == set(params)


def test_proofs_beyond_an_empty_ledger_are_422(app_client: TestClient) -> None:
    assert app_client.get("/ledger/proof/inclusion?index=0&size=1").status_code == 422
    # Equal sizes are not the reason: RFC 9162 §2.1.4.1 gives them an empty proof (see
    # test_equal_sizes_answer_an_empty_proof). An empty ledger has no tree of size 1, and
    # §4.4 asks for sizes of existing tree heads: refused, and naming "to".
    response = app_client.get("/ledger/proof/consistency?from=1&to=1")
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"to"}


@pytest.mark.parametrize("size", [1, 2, 256, SIZE])
def test_equal_sizes_answer_an_empty_proof(
    app_client: TestClient, roots: list[bytes], size: int
) -> None:
    """RFC 9162 §2.1.4.1: ``SUBPROOF(m, D[m], true) = {}``. A client holding two heads of
    the same size gets an empty proof and the one root, and accepts them."""
    response = app_client.get("/ledger/proof/consistency", params={"from": size, "to": size})
    assert response.status_code == 200
    body = response.json()
    assert body["proof"] == []
    assert body["old_root"] == body["new_root"] == b64(roots[size])
    merkle.verify_consistency(size, size, [], roots[size], roots[size])


@pytest.mark.parametrize(
    "path",
    [
        "/ledger/checkpoint",
        "/ledger/checkpoints",
        "/ledger/key",
        "/ledger/proof/inclusion",
        "/ledger/proof/consistency",
    ],
)
def test_routes_are_read_only(app_client: TestClient, path: str) -> None:
    response = app_client.post(path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- fuzzing ------------------------------------------------------------------------------


@pytest.fixture
def fuzz_client(database: Database, settings: Settings) -> Iterator[TestClient]:
    grow(database, 40)
    with TestClient(create_app(settings, database)) as client:
        yield client


PARAM_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=45).map(str),
    st.text(max_size=25),
    st.text(alphabet="0123456789\u00b2\u00b3\u0660\u0661\u06f1\uff10\u2460 +-.eE", max_size=22),
)
ROUTES = {
    "/ledger/proof/inclusion": ("index", "size"),
    "/ledger/proof/consistency": ("from", "to"),
    "/ledger/checkpoints": ("limit", "before"),
}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    path=st.sampled_from(sorted(ROUTES)),
    values=st.lists(st.none() | PARAM_VALUES, min_size=2, max_size=2),
    extra=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
)
def test_fuzzed_parameters_never_give_a_server_error(
    fuzz_client: TestClient, path: str, values: list[str | None], extra: dict[str, str]
) -> None:
    params = dict(extra)
    for name, value in zip(ROUTES[path], values, strict=True):
        if value is not None:
            params[name] = value
    response = fuzz_client.get(path, params=params)
    assert response.status_code in (200, 422), (params, response.text)
    body = response.json()
    if response.status_code == 422:
        assert body["error"]["code"] == "invalid_input"
    elif path.startswith("/ledger/proof/"):
        assert all(len(unb64(node)) == 32 for node in body["proof"])
