"""``[site.brand]`` checks: colours, WCAG AA contrast with the computed ratio, the logo
(https URL or inline SVG without script, handlers or outside references), the footer's
https link; every problem with its key path, and a bad brand yields no brand at all."""

from __future__ import annotations

from typing import Any

import pytest

from zeroparty.brand import Brand, contrast_ratio, parse_brand
from zeroparty.config_errors import ConfigProblems

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><title>Northwind</title>'
    '<defs><linearGradient id="g"><stop offset="0" stop-color="#0b5cad"/></linearGradient></defs>'
    '<rect width="10" height="10" fill="url(#g)"/><use href="#g"/></svg>'
)
GOOD: dict[str, Any] = {
    "name": "Northwind Analytics",
    "logo": "https://northwind.example/logo.svg",
    "colours": {"primary": "#0B5CAD", "text": "#1b1b1f", "background": "#ffffff"},
    "footer": {
        "address": "Northwind Analytics GmbH, Example Street 1, 10115 Berlin",
        "privacy_policy": "https://northwind.example/privacy",
    },
}


def parsed(raw: object) -> tuple[Brand | None, list[tuple[str, str]]]:
    problems = ConfigProblems()
    brand = parse_brand(raw, problems, site_name="Northwind (demo)")
    return brand, problems.items


def with_(**changes: Any) -> dict[str, Any]:
    raw = {**GOOD, "colours": dict(GOOD["colours"]), "footer": dict(GOOD["footer"])}
    for path, value in changes.items():
        *tables, key = path.split("__")
        target = raw
        for table in tables:
            target = target[table]
        target[key] = value
    return raw


def test_a_good_brand_becomes_css_variables() -> None:
    brand, problems = parsed(GOOD)
    assert problems == []
    assert brand == Brand(
        "Northwind Analytics", "https://northwind.example/logo.svg", "", "#0b5cad", "#1b1b1f",
        "#ffffff", GOOD["footer"]["address"], "https://northwind.example/privacy",
    )  # fmt: skip
    assert brand.css_variables() == (
        ":root { --accent: #0b5cad; --accent-dark: #0b5cad; --on-accent: #ffffff; "
        "--fg: #1b1b1f; --bg: #ffffff; }"
    )
    inline, problems = parsed(with_(logo=SVG))
    assert problems == []
    assert inline is not None
    assert inline.logo_svg == SVG
    assert inline.logo_url == ""


def test_absent_brand_and_defaults() -> None:
    assert parsed(None) == (None, [])
    brand, problems = parsed({})
    assert problems == []
    assert brand is not None
    assert (brand.name, brand.primary, brand.background) == (
        "Northwind (demo)",
        "#0b5cad",
        "#ffffff",
    )


def test_contrast_ratio_is_wcags() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize(
    ("raw", "path", "says"),
    [
        (with_(colours__primary="#12345"), "site.brand.colours.primary", "#rrggbb"),
        (with_(colours__text="blue"), "site.brand.colours.text", "#rrggbb"),
        (with_(colours__background=255), "site.brand.colours.background", "#rrggbb"),
        (with_(colours__accent="#000000"), "site.brand.colours.accent", "unknown key"),
        (with_(colours__primary="#7fb2e5"), "site.brand.colours.primary",
         "#7fb2e5 on background #ffffff has a contrast of 2.23:1; WCAG AA needs at least 4.5:1"),
        (with_(colours__text="#999999"), "site.brand.colours.text", "contrast of 2.85:1"),
        (with_(logo="http://northwind.example/logo.png"), "site.brand.logo", "https://"),
        (with_(logo="javascript:alert(1)"), "site.brand.logo", "https://"),
        (with_(logo=["https://x.example/a.png"]), "site.brand.logo", "inline SVG"),
        (with_(logo=SVG.replace("<title>", "<script>alert(1)</script><title>")),
         "site.brand.logo", "<script>"),
        (with_(logo=SVG.replace("<rect ", '<rect onclick="alert(1)" ')),
         "site.brand.logo", "event handlers (onclick on <rect>)"),
        (with_(logo=SVG.replace('<svg xmlns="http://www.w3.org/2000/svg"',
                                '<svg xmlns="http://www.w3.org/2000/svg" onload="x()"')),
         "site.brand.logo", "event handlers (onload on <svg>)"),
        (with_(logo=SVG.replace('href="#g"', 'href="https://evil.example/a.svg#g"')),
         "site.brand.logo", "may not refer outside itself"),
        (with_(logo=SVG.replace('fill="url(#g)"', 'fill="url(https://evil.example/x)"')),
         "site.brand.logo", "may not refer outside itself"),
        (with_(logo=SVG.replace("<title>", "<foreignObject><p>x</p></foreignObject><title>")),
         "site.brand.logo", "<foreignObject>"),
        (with_(logo=SVG.replace("<title>", "<style>@import url(x)</style><title>")),
         "site.brand.logo", "<style>"),
        (with_(logo='<!DOCTYPE svg [<!ENTITY a "aaaa">]>' + SVG), "site.brand.logo", "DOCTYPE"),
        (with_(logo="<svg><rect></svg>"), "site.brand.logo", "not well-formed"),
        (with_(logo="<svg/>"), "site.brand.logo", "xmlns"),
        (with_(logo="<svg " + "a" * 30_000), "site.brand.logo", "larger than"),
        (with_(footer__privacy_policy="http://northwind.example/privacy"),
         "site.brand.footer.privacy_policy", "https://"),
        (with_(footer__address="line one\nline two"), "site.brand.footer.address", "one line"),
        (with_(footer__phone="123"), "site.brand.footer.phone", "unknown key"),
        (with_(sender="x@y.example"), "site.brand.sender", "unknown key"),
        ("blue", "site.brand", "must be a table"),
    ],
)  # fmt: skip
def test_bad_brand_is_refused_with_its_key_path(raw: object, path: str, says: str) -> None:
    brand, problems = parsed(raw)
    assert brand is None
    assert [where for where, _ in problems] == [path]
    assert says in problems[0][1]
