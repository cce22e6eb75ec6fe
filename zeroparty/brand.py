"""The site's brand (``[site.brand]`` of ``site.toml``): checked, then turned into the CSS
custom properties the shared stylesheet (``zeroparty/static/zeroparty.css``) reads.

Every problem is reported with its key path, as ``site load`` reports the rest of the
file: a colour that is not ``#rrggbb``, a primary colour or text too faint on the
background (WCAG 2.x AA, 4.5:1, with the computed ratio), a logo that is neither an
``https://`` URL nor inline SVG, inline SVG that could run script or fetch anything
(script or style elements, ``on…`` attributes, references outside the image), a
footer link that is not ``https://``.

Not yet stored or applied: keeping the brand needs columns in ``site_info`` (a migration).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from zeroparty.config_errors import ConfigProblems

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
