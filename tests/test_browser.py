"""The sample site in headless Chromium: phone and desktop widths, light and dark.

Builds the repository's own site (press.toml, posts/, templates/) into a temporary
folder, serves it over real HTTP on 127.0.0.1 and looks at it as a reader would:
screenshots that are not blank, no sideways scrolling on a phone, readable text.
The post's screenshots are also kept in docs/screenshots/ for the README.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS
from review_press.build import BuildOptions, build
from sites import serve_directory

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
POST = "posts/run-away-season-1-review/"
PAGES = {"home": "", "post": POST, "tag": "tags/crime/", "archive": "archive/"}
WIDTHS = (375, 1280)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sample site, built into a temporary copy and served on 127.0.0.1."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    root = tmp_path_factory.mktemp("sample")
    shutil.copy(REPO / "press.toml", root / "press.toml")
    shutil.copytree(REPO / "posts", root / "posts")
    shutil.copytree(REPO / "templates", root / "templates")
    build(root, BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)))
    with serve_directory(root / "out") as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[Any]:
    """One headless Chromium for the module (the system's; never a downloaded one)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def distinct_colours(png: bytes) -> int:
    """How many colours a screenshot holds (Pillow); a blank page has one or two."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        colours = image.convert("RGB").resize((120, 240)).getcolors(maxcolors=120 * 240)
        return len(colours or ())


def assert_not_blank(png: bytes) -> None:
    """The screenshot shows something: many colours (with Pillow) or, without it, a PNG too big to be blank."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        assert len(png) > 8_000, f"screenshot of {len(png)} bytes looks blank"
        return
    assert distinct_colours(png) > 8, "screenshot looks blank"


def open_page(browser: Any, url: str, width: int, scheme: str = "light") -> tuple[Any, list[str]]:
    """A page at `width` px showing `url`; also the URLs that failed to load."""
    page = browser.new_page(viewport={"width": width, "height": 800 if width > 500 else 812}, color_scheme=scheme)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and not r.url.endswith("favicon.ico") else None)
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(url, wait_until="load")
    return page, failed


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_readably(browser: Any, base_url: str, tmp_path: Path, name: str, width: int) -> None:
    page, failed = open_page(browser, base_url + PAGES[name], width)
    try:
        assert failed == [], f"failed to load: {failed}"
        shot = page.screenshot(full_page=True)
        (tmp_path / f"{name}-{width}.png").write_bytes(shot)
        assert_not_blank(shot)
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width, f"{name} scrolls sideways at {width}px ({scroll_width} > {inner_width})"
        font_size = float(page.evaluate("getComputedStyle(document.body).fontSize").removesuffix("px"))
        assert font_size >= 16, f"body text is {font_size}px"
        assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily"), "the stylesheet did not load"
        if name == "post":
            top = page.screenshot()  # the first screenful, for the README
            assert_not_blank(top)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            target = SCREENSHOTS / f"post-{width}.png"
            if not target.exists() or target.read_bytes() != top:
                target.write_bytes(top)
    finally:
        page.close()


def test_wide_table_scrolls_inside_its_box_on_a_phone(browser: Any, base_url: str) -> None:
    page, _ = open_page(browser, base_url + POST, 375)
    try:
        page.evaluate("document.querySelector('.table-scroll td').textContent = 'x'.repeat(30) + ' ' + 'y'.repeat(60)")
        box = page.evaluate("(() => { const b = document.querySelector('.table-scroll'); return [b.scrollWidth, b.clientWidth]; })()")
        assert box[0] > box[1], "the table should be wider than its box"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        page.close()


def test_the_subscribe_form_shows_email_and_name_but_hides_the_honeypot(browser: Any, base_url: str) -> None:
    page, _ = open_page(browser, base_url + POST, 375)
    try:
        for name in ("email", "name"):
            box = page.locator(f"form.subscribe-form input[name={name}]").bounding_box()
            assert box is not None and box["x"] >= 0 and box["width"] > 200, name
        trap = page.locator("form.subscribe-form input[name=website]").bounding_box()
        assert trap is None or trap["x"] + trap["width"] <= 0, "the honeypot must be off screen"
        focused = []
        for _ in range(40):  # Tab through the page: the honeypot is never focused
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.name || ''"))
        assert "website" not in focused and "email" in focused
    finally:
        page.close()


def test_dark_mode_follows_the_system(browser: Any, base_url: str) -> None:
    light, _ = open_page(browser, base_url + POST, 1280, "light")
    dark, _ = open_page(browser, base_url + POST, 1280, "dark")
    try:
        script = "getComputedStyle(document.body).backgroundColor"
        light_bg, dark_bg = light.evaluate(script), dark.evaluate(script)
        assert light_bg != dark_bg

        def brightness(rgb: str) -> float:
            r, g, b = (float(v) for v in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
            return (r + g + b) / 3

        assert brightness(light_bg) > 200 > 60 > brightness(dark_bg)
    finally:
        light.close()
        dark.close()
