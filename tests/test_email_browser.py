"""The sample post's email in headless Chromium, as a reader would see it.

600 px (a desktop client's reading pane), 375 px (a phone) and 600 px in dark mode: each
screenshot must have content (not a blank page), nothing may scroll sideways, and the dark
rendering must really be dark. Network requests are blocked, as many mail clients do, but
for the hero image, served from memory. The sample post is given a hero image and a code
block (`email_sites.sample_with_hero_and_code`), so docs/screenshots/email-*.png, refreshed
for the README, show both.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS
from email_sites import REPO, edition_of, hero_jpeg, one_post, sample_with_hero_and_code
from review_press.edition import lint, make_edition

pytestmark = pytest.mark.browser
PIL = pytest.importorskip("PIL.Image")
sync_api = pytest.importorskip("playwright.sync_api")

SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWS = {"600": (600, "light"), "375": (375, "light"), "dark": (600, "dark")}


HERO_URL = "https://reviews.example.org/images/run-away-hero.jpg"


@pytest.fixture(scope="module")
def email_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    post, config, theme = sample_with_hero_and_code(tmp_path_factory.mktemp("sample"))
    html, _text = make_edition(post, config, theme).personalize("Ada", "https://reviews.example.org/newsletter/unsubscribe?token=preview")
    assert f'src="{HERO_URL}"' in html
    return html


def _offline_but_the_hero(route) -> None:
    """Block every request, as many mail clients do, except the hero image (served from memory)."""
    if route.request.url == HERO_URL:
        route.fulfill(status=200, content_type="image/jpeg", body=hero_jpeg())
    else:
        route.abort()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _stats(png: bytes) -> tuple[int, float]:
    """(distinct colours, mean brightness 0-255) of a screenshot."""
    image = PIL.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    grey = image.convert("L")
    mean = sum(i * n for i, n in enumerate(grey.histogram())) / (grey.width * grey.height)
    return len(colours), mean


@pytest.mark.parametrize("view", list(VIEWS))
def test_email_renders_without_sideways_scroll(browser, email_html: str, view: str) -> None:
    width, scheme = VIEWS[view]
    page = browser.new_page(viewport={"width": width, "height": 1000})
    try:
        page.route("**/*", _offline_but_the_hero)
        page.emulate_media(color_scheme=scheme)
        page.set_content(email_html, wait_until="load")
        scroll_width, client_width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll_width <= client_width, f"{view}: content is {scroll_width}px wide in a {client_width}px window"
        widest = page.evaluate("Math.max(...[...document.querySelectorAll('body *')].map(e => e.getBoundingClientRect().right))")
        assert widest <= width + 0.5
        assert page.locator("h1").first.inner_text().startswith("Run Away Season 1 Review")
        assert not page.locator(".preheader").is_visible()
        assert page.locator("text=Unsubscribe").first.is_visible()
        hero = page.evaluate(
            "(() => { const i = document.querySelector('.hero img'); const r = i.getBoundingClientRect(); return [i.naturalWidth, r.width, r.bottom]; })()"
        )
        assert hero[0] == 1200 and hero[1] == width - 32 and hero[2] < 1000, f"{view}: hero {hero}"  # as wide as the text
        assert page.locator("pre.highlight").first.is_visible()
        png = page.screenshot(full_page=False)
        colours, brightness = _stats(png)
        assert colours > 50, f"{view}: the screenshot is blank"
        if scheme == "dark":
            assert brightness < 90, f"dark mode is not dark (mean brightness {brightness:.0f})"
            background = page.evaluate("getComputedStyle(document.querySelector('.container')).backgroundColor")
            assert background == "rgb(29, 28, 26)"
        else:
            assert brightness > 180, f"light mode is not light (mean brightness {brightness:.0f})"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"email-{view}.png").write_bytes(png)
    finally:
        page.close()


def test_phone_layout_drops_the_side_padding(browser, email_html: str) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})
    try:
        page.route("**/*", lambda route: route.abort())
        page.set_content(email_html, wait_until="load")
        padding = page.evaluate("getComputedStyle(document.querySelector('.content')).paddingLeft")
        assert padding == "16px"
        title = page.evaluate("getComputedStyle(document.querySelector('.title')).fontSize")
        assert title == "24px"
    finally:
        page.close()


HARD_POST = """\
Wide things: a long unbroken link <https://example.org/a/very/long/path/that/goes/on/and/on/without/any/break/at/all.html>.

```python
x = some_function_with_a_long_name(argument_one, argument_two, argument_three, argument_four)
```

| Series | Focus | Tone | Network | Year |
|---|---|---|---|---|
| Fool Me Once | Twists & deception | Fast, shocking | Netflix | 2024 |

![A wide still](https://example.org/wide.jpg)

<img src="https://example.org/small.png" alt="small" width="120">

<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ" title="Trailer" width="900" height="500"></iframe>
"""


@contextlib.contextmanager
def _on_a_phone(browser, html: str) -> Iterator[object]:
    """An email in a 375 px window, offline: the page, once it is checked not to scroll sideways."""
    page = browser.new_page(viewport={"width": 375, "height": 800})
    try:
        page.route("**/*", lambda route: route.abort())
        page.set_content(html, wait_until="load")
        scroll_width, client_width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll_width <= client_width
        yield page
    finally:
        page.close()


def test_a_post_full_of_wide_things_fits_a_phone(browser, tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, HARD_POST)
    assert lint(edition, post) == []
    html, _text = edition.personalize("Ada", "https://example.org/newsletter/unsubscribe?token=t")
    with _on_a_phone(browser, html) as page:
        small = page.evaluate("document.querySelector('img[alt=small]').getBoundingClientRect().width")
        assert small <= 120


def test_a_digest_reads_as_a_list_of_posts_and_fits_a_phone(browser, tmp_path: Path) -> None:
    import datetime as dt

    from review_press.letters import digest_letter

    long_title = "An extraordinarily long title about a television series " + "supercalifragilistic" * 3
    post, config, theme = one_post(tmp_path, "Body.", title=long_title, summary="A <b>summary</b> with *marks* & [brackets]")
    span = (dt.datetime(2026, 2, 2, tzinfo=dt.UTC), dt.datetime(2026, 2, 9, tzinfo=dt.UTC))
    letter = digest_letter(config, span, [post, post])
    edition = make_edition(letter, config, theme)
    assert lint(edition, letter) == []
    html, _text = edition.personalize(
        "Ada", "https://example.org/newsletter/unsubscribe?token=t", "https://example.org/newsletter/manage?token=t"
    )
    with _on_a_phone(browser, html) as page:
        links = page.evaluate("[...document.querySelectorAll('.post h2 a')].map(a => [a.textContent, a.href])")
        assert links == [[long_title, config.url(post.path)]] * 2
        shown = page.evaluate("[...document.querySelectorAll('.post p')].map(p => p.textContent)")
        assert post.summary_text == "A summary with marks & [brackets]" and shown.count(post.summary_text) == 2  # its text, not markup
        assert page.locator("text=Manage your subscription").first.is_visible()
