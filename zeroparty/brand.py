"""The site's brand (``[site.brand]`` of ``site.toml``): checked, then turned into the CSS
custom properties the shared stylesheet (``zeroparty/static/zeroparty.css``) reads.

Every problem is reported with its key path, as ``site load`` reports the rest of the
file: a colour that is not ``#rrggbb``, a primary colour or text too faint on the
background (WCAG 2.x AA, 4.5:1, with the computed ratio), a logo that is neither an
``https://`` URL nor inline SVG, inline SVG that could run script or fetch anything
(script or style elements, ``on…`` attributes, references outside the image), a
footer link that is not ``https://``.

Stored by ``site load`` in ``site_info.brand`` (JSON; :data:`BRAND_SECTION`), read by
pages through a per-process copy (:func:`current_brand`: no SQL statement on a page while
the copy is fresh, at most every :data:`BRAND_CACHE_SECONDS`, at once after a load in the
same process), applied through one stylesheet, ``/brand.css`` (:func:`brand_css`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from jinja2 import pass_context
from sqlalchemy import event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from zeroparty.config_errors import ConfigProblems
from zeroparty.db import Database
from zeroparty.site_info import SITE_INFO_ID, SiteInfo, forget_mail_senders

WHERE = "site.brand"
BRAND_KEYS = frozenset({"name", "logo", "colours", "footer"})
COLOUR_KEYS = ("primary", "text", "background")
FOOTER_KEYS = frozenset({"address", "privacy_policy"})
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
AA_RATIO = 4.5
MAX_SVG_BYTES = 20_000
MAX_URL = 500
SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
# Drawing elements only: nothing that runs, embeds or styles the page around it.
SVG_ELEMENTS = frozenset(
    {
        "svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
        "text", "tspan", "title", "desc", "defs", "linearGradient", "radialGradient",
        "stop", "clipPath", "use", "symbol",
    }
)  # fmt: skip
URL_REF = re.compile(r"url\s*\(\s*['\"]?\s*([^)'\"\s]*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    logo_url: str
    logo_svg: str
    primary: str
    text: str
    background: str
    footer_address: str
    privacy_policy: str

    def css_variables(self) -> str:
        """The ``:root`` rule the base templates put after the shared stylesheet."""
        return (
            f":root {{ --accent: {self.primary}; --accent-dark: {self.primary}; "
            f"--on-accent: {self.background}; --fg: {self.text}; --bg: {self.background}; }}"
        )

    @property
    def version(self) -> str:
        """A short digest of the stylesheet: ``/brand.css?v=`` changes with the colours."""
        return hashlib.sha256(self.css_variables().encode()).hexdigest()[:12]


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of ``#rrggbb``."""
    channels = []
    for index in (1, 3, 5):
        value = int(colour[index : index + 2], 16) / 255
        channels.append(value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2.x contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    light, dark = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _local_name(tag: str) -> tuple[str, str]:
    namespace, _, name = tag.rpartition("}")
    return namespace.lstrip("{"), name


def svg_problem(svg: str) -> str | None:
    """Why inline SVG may not be shown on our pages, or None if it is a plain drawing."""
    if len(svg.encode()) > MAX_SVG_BYTES:
        return f"inline SVG larger than {MAX_SVG_BYTES} bytes"
    if re.search(r"<!(DOCTYPE|ENTITY)|<\?", svg, re.IGNORECASE):
        return "inline SVG may not hold a DOCTYPE, entities or processing instructions"
    try:
        root = ET.fromstring(svg)  # noqa: S314 - no DOCTYPE, so no entities to expand
    except ET.ParseError as exc:
        return f"inline SVG is not well-formed XML: {exc}"
    if _local_name(root.tag) != (SVG_NS, "svg"):
        return f'inline SVG must be one <svg xmlns="{SVG_NS}"> element'
    for element in root.iter():
        namespace, name = _local_name(element.tag)
        if namespace != SVG_NS or name not in SVG_ELEMENTS:
            return (
                f"inline SVG may not contain <{name}> (drawing elements only, no script or style)"
            )
        for attribute, value in element.attrib.items():
            attr_namespace, attr_name = _local_name(attribute)
            if attr_name.lower().startswith("on"):
                return f"inline SVG may not have event handlers ({attr_name} on <{name}>)"
            external = not value.strip().startswith("#")
            if attr_name == "href" and attr_namespace in ("", XLINK_NS) and external:
                return f"inline SVG may not refer outside itself (href {value[:60]!r})"
            for reference in URL_REF.findall(value):
                if not reference.startswith("#"):
                    return f"inline SVG may not refer outside itself (url({reference[:60]}))"
            if attr_name == "style" and re.search(r"@import|expression\s*\(", value, re.I):
                return "inline SVG may not import styles"
    return None


def _text(table: Mapping[str, object], key: str, path: str, problems: ConfigProblems,
          limit: int = 200) -> str:  # fmt: skip
    value = table.get(key, "")
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        problems.add(path, f"must be one line of text, at most {limit} characters")
        return ""
    return value.strip()


def _https(value: str, path: str, problems: ConfigProblems) -> str:
    if value and (not value.startswith("https://") or len(value) <= len("https://")):
        problems.add(path, f"must be an https:// URL, not {value[:60]!r}")
        return ""
    return value


def parse_brand(raw: object, problems: ConfigProblems, site_name: str = "") -> Brand | None:
    """``[site.brand]`` checked; None when absent (the stylesheet's defaults apply) or
    when it has problems (each added to ``problems`` with its key path)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add(WHERE, "must be a table")
        return None
    before = len(problems.items)
    for key in sorted(set(raw) - BRAND_KEYS):
        problems.add(f"{WHERE}.{key}", f"unknown key (known: {', '.join(sorted(BRAND_KEYS))})")
    name = _text(raw, "name", f"{WHERE}.name", problems) or site_name
    logo_url = logo_svg = ""
    logo = raw.get("logo", "")
    if not isinstance(logo, str):
        problems.add(f"{WHERE}.logo", "must be an https:// URL or inline SVG (<svg …>…</svg>)")
    elif logo.lstrip().startswith("<"):
        problem = svg_problem(logo.strip())
        if problem:
            problems.add(f"{WHERE}.logo", problem)
        else:
            logo_svg = logo.strip()
    elif logo:
        if len(logo) > MAX_URL or not logo.isprintable() or " " in logo:
            problems.add(
                f"{WHERE}.logo", f"must be an https:// URL of at most {MAX_URL} characters"
            )
        else:
            logo_url = _https(logo.strip(), f"{WHERE}.logo", problems)
    colours = {"primary": "#0b5cad", "text": "#1b1b1f", "background": "#ffffff"}
    table = raw.get("colours", {})
    if not isinstance(table, dict):
        problems.add(f"{WHERE}.colours", "must be a table")
        table = {}
    for key in sorted(set(table) - set(COLOUR_KEYS)):
        problems.add(
            f"{WHERE}.colours.{key}", f"unknown key (known: {', '.join(sorted(COLOUR_KEYS))})"
        )
    valid = True
    for key in COLOUR_KEYS:
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, str) or not COLOUR_RE.match(value):
            problems.add(f"{WHERE}.colours.{key}", f"must be a colour as #rrggbb, not {value!r}")
            valid = False
        else:
            colours[key] = value.lower()
    if valid:
        for key in ("primary", "text"):
            ratio = contrast_ratio(colours[key], colours["background"])
            if ratio < AA_RATIO:
                problems.add(
                    f"{WHERE}.colours.{key}",
                    f"{colours[key]} on background {colours['background']} has a contrast "
                    f"of {ratio:.2f}:1; WCAG AA needs at least {AA_RATIO}:1",
                )
    footer = raw.get("footer", {})
    if not isinstance(footer, dict):
        problems.add(f"{WHERE}.footer", "must be a table")
        footer = {}
    for key in sorted(set(footer) - FOOTER_KEYS):
        problems.add(
            f"{WHERE}.footer.{key}", f"unknown key (known: {', '.join(sorted(FOOTER_KEYS))})"
        )
    address = _text(footer, "address", f"{WHERE}.footer.address", problems, limit=500)
    policy = _text(footer, "privacy_policy", f"{WHERE}.footer.privacy_policy", problems, 500)
    policy = _https(policy, f"{WHERE}.footer.privacy_policy", problems)
    if len(problems.items) > before:
        return None
    return Brand(
        name, logo_url, logo_svg, colours["primary"], colours["text"], colours["background"],
        address, policy,
    )  # fmt: skip


# --- Keeping and reading the brand -----------------------------------------------------

BRAND_CACHE_SECONDS = 5.0
# The header and footer the base templates show with a brand, in the brand's colours.
BRAND_LAYOUT = (
    ".brand-header { display: flex; align-items: center; gap: .75rem; max-width: 40rem; "
    "margin: 0 auto; padding: 1rem 1rem 0; color: var(--fg); font-weight: 600; }\n"
    ".brand-header .brand-logo, .brand-header .brand-logo svg { height: 2.5rem; width: auto; "
    "max-width: 12rem; display: block; }\n"
    ".brand-footer { max-width: 40rem; margin: 2rem auto 0; padding: 1rem; color: var(--fg); "
    "border-top: 1px solid currentColor; font-size: .9rem; }\n"
    ".brand-footer p { margin: .25rem 0; }\n"
    ".brand-footer a { color: var(--accent); }\n"
)
"""How long a process shows the brand it read last: a ``site load`` in another process
reaches this one's pages within this time (at once in the same process)."""


def brand_json(brand: Brand | None) -> str | None:
    return None if brand is None else orjson.dumps(dataclasses.asdict(brand)).decode()


def brand_from_json(text: str | None) -> Brand | None:
    if not text:
        return None
    return Brand(**orjson.loads(text))


def read_brand(session: Session) -> Brand | None:
    """The stored brand (one statement), or None when the site file had none."""
    stored = session.execute(
        select(SiteInfo.brand).where(SiteInfo.id == SITE_INFO_ID)
    ).scalar_one_or_none()
    return brand_from_json(stored)


class _BrandCache:
    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()
        self._brands: WeakKeyDictionary[Database, tuple[int, float, Brand | None]] = (
            WeakKeyDictionary()
        )

    def forget(self, *_args: object) -> None:
        with self._lock:
            self.generation += 1
            self._brands.clear()

    def peek(self, database: Database) -> Brand | None:
        cached = self._brands.get(database)
        return None if cached is None or cached[0] != self.generation else cached[2]

    def get(self, database: Database) -> Brand | None:
        now = time.monotonic()
        cached = self._brands.get(database)
        if cached is not None and cached[0] == self.generation and cached[1] > now:
            return cached[2]
        generation = self.generation
        try:
            with database.read() as session:
                brand = read_brand(session)
        except SQLAlchemyError:
            return None if cached is None else cached[2]
        with self._lock:
            if generation == self.generation:
                self._brands[database] = (generation, now + BRAND_CACHE_SECONDS, brand)
        return brand


_BRANDS = _BrandCache()


def current_brand(database: Database, *, read: bool = True) -> Brand | None:
    """This process's copy of the brand; ``read=False`` never touches the database (a 5xx
    page: the database may be why), showing the last copy read, if any."""
    return _BRANDS.get(database) if read else _BRANDS.peek(database)


def store_brand(session: Session, brand: Brand | None) -> list[str]:
    """Apply a checked ``[site.brand]`` (after ``[site]``, which made the row)."""
    session.flush()
    row = session.get(SiteInfo, SITE_INFO_ID)
    value = brand_json(brand)
    if row is None or row.brand == value:
        return []
    row.brand = value
    forget_mail_senders(session)  # mails name the brand's address and privacy policy
    _BRANDS.forget()
    event.listen(session, "after_commit", _BRANDS.forget, once=True)
    return ["site.brand: " + ("removed" if brand is None else "updated")]


@pass_context
def site_brand(context: Mapping[str, Any]) -> Brand | None:
    """The brand for a page's template (``site_brand()``); a 5xx page shows only the
    copy already read, never reading the database."""
    request: Request | None = context.get("request")
    database: Database | None = (
        getattr(request.app.state, "database", None) if request is not None else None
    )
    if database is None:
        return None
    status = context.get("status")
    return current_brand(database, read=not (isinstance(status, int) and status >= 500))


async def brand_css(request: Request) -> Response:
    """``GET /brand.css``: the brand's custom properties, after the shared stylesheet.
    Pages link it as ``/brand.css?v=<version>``, so it may be cached for a day."""
    database: Database = request.app.state.database
    brand = await database.run(current_brand, database)
    css = brand.css_variables() + "\n" + BRAND_LAYOUT if brand is not None else ""
    return Response(
        css,
        media_type="text/css",
        headers={"cache-control": "public, max-age=86400"},
    )
