"""Images in posts: every way of writing one reaches a file in out/ from the page, the three feeds
and the email; sizes, resized copies (deterministic, cached) and every kind of bad image."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path

import lxml.html
import pytest
from lxml import etree
from PIL import Image

from email_sites import NEWSLETTER_TOML
from files import snapshot
from review_press import images, markup
from review_press.build import BuildOptions, build, check
from review_press.config import load_config
from review_press.content import load_posts, slug_from_filename
from review_press.errors import PressError
from sites import post_text, serve_directory, write_site

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OPTS = BuildOptions(now=NOW)
BASE = "https://example.org/blog/"
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
BUNDLE_BODY = """\
A wide still from the bundle: ![wide](wide.jpg)

[![small](../img/small.png)](../img/small.png)

![beside](images/beside.png) and ![logo](/images/logo.png) and ![remote](https://example.com/remote.png)

<figure><img src="../../static/images/logo.png" alt="raw" width="100"></figure>

![vector](diagram.svg)
"""
FLAT_BODY = "Flat post: ![flat](img/small.png)\n"


def picture(size: tuple[int, int], fmt: str = "PNG", color: tuple[int, int, int] = (200, 40, 30), **options: object) -> bytes:
    """A real image of `size` in `fmt`."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels in a few bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def image_site(root: Path) -> Path:
    """A newsletter site under https://example.org/blog/ with every form of image: a page bundle
    (its own file, one in a subfolder, `../img/`, `/images/` from static/, `../../static/`,
    remote, SVG) and a flat post with `img/` beside it."""
    files: dict[str, str | bytes] = {
        "my-post/index.md": post_text("Bundle", "2026-02-03", BUNDLE_BODY),
        "my-post/wide.jpg": picture((1600, 900), "JPEG"),
        "my-post/images/beside.png": picture((200, 100)),
        "my-post/diagram.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20"/></svg>\n',
        "img/small.png": picture((320, 180), color=(20, 120, 40)),
        "2026-02-04-flat.md": post_text("Flat", "2026-02-04", FLAT_BODY),
    }
    write_site(root, files, NEWSLETTER_TOML)
    (root / "static/images").mkdir(parents=True)
    (root / "static/images/logo.png").write_bytes(picture((200, 100), color=(0, 0, 200)))
    return root


def line_of(path: Path, needle: str) -> int:
    """The line of `path` that first holds `needle`."""
    return next(n for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1) if needle in line)


def problems(root: Path) -> list[str]:
    with pytest.raises(PressError) as info:
        build(root, OPTS)
    return [str(e) for e in getattr(info.value, "errors", (info.value,))]


def local(url: str, server: str) -> str:
    """A URL of the site (absolute, or from the host's root) as the test server serves it."""
    for prefix in (BASE, "/blog/"):
        if url.startswith(prefix):
            return server + url[len(prefix) :]
    raise AssertionError(f"{url} is not a URL of the site")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return response.read()


def imgs(fragment: str) -> list[lxml.html.HtmlElement]:
    if not fragment.strip():
        return []
    return lxml.html.fragment_fromstring(fragment, create_parent="div").xpath(".//img")


def srcset_urls(img: lxml.html.HtmlElement) -> list[str]:
    return [c.strip().split()[0] for c in (img.get("srcset") or "").split(",") if c.strip()]


# --- where each form of image goes --------------------------------------------------------------


def test_a_page_bundle_gets_its_folder_as_slug_as_in_hugo(tmp_path: Path) -> None:
    assert slug_from_filename(Path("posts/my-post/index.md")) == "my-post"
    assert slug_from_filename(Path("posts/2026-01-05-dated/index.md")) == "dated"
    assert slug_from_filename(Path("posts/index.md"), Path("posts")) == "index"
    root = write_site(tmp_path, {"one/index.md": post_text("One"), "two/index.md": post_text("Two")})
    assert sorted(p.slug for p in load_posts(load_config(root))) == ["one", "two"]  # not two posts called "index"


def test_every_form_of_image_is_a_url_that_exists_in_out(tmp_path: Path) -> None:
    root = image_site(tmp_path / "site")
    build(root, OPTS)
    out = root / "out"
    page = lxml.html.fromstring((out / "posts/my-post/index.html").read_bytes())
    prose = page.cssselect(".prose")[0]
    by_alt = {img.get("alt"): img for img in prose.xpath(".//img")}
    assert by_alt["wide"].get("src") == "/blog/posts/my-post/wide.jpg"
    assert by_alt["small"].get("src") == "/blog/posts/my-post/small.png"
    assert by_alt["beside"].get("src") == "/blog/posts/my-post/beside.png"
    assert by_alt["logo"].get("src") == by_alt["raw"].get("src") == "/blog/images/logo.png"
    assert by_alt["remote"].get("src") == "https://example.com/remote.png"
    assert by_alt["vector"].get("src") == "/blog/posts/my-post/diagram.svg"
    assert prose.xpath(".//a[img]")[0].get("href") == "/blog/posts/my-post/small.png"  # the link to the same file follows it
    flat = lxml.html.fromstring((out / "posts/flat/index.html").read_bytes()).cssselect(".prose img")[0]
    assert flat.get("src") == "/blog/posts/flat/small.png"
    assert (out / "posts/flat/small.png").read_bytes() == (root / "posts/img/small.png").read_bytes()

    found: dict[str, set[str]] = {key: set() for key in ("page", "index", "rss", "atom", "json", "email", "email text")}
    for img in prose.xpath(".//img"):
        found["page"] |= {img.get("src"), *srcset_urls(img)}
    for a in prose.xpath(".//a[img]"):
        found["page"].add(a.get("href"))
    for img in lxml.html.fromstring((out / "index.html").read_bytes()).xpath("//img"):  # the summary on the home page
        found["index"].add(img.get("src"))
    for item in etree.parse(out / "feed.xml").getroot().iter("item"):
        found["rss"] |= {img.get("src") for tag in ("description", CONTENT) for img in imgs(item.findtext(tag) or "")}
    for entry in etree.parse(out / "atom.xml").getroot().iter(f"{ATOM}entry"):
        found["atom"] |= {img.get("src") for tag in ("summary", "content") for img in imgs(entry.findtext(f"{ATOM}{tag}") or "")}
    for item in json.loads((out / "feed.json").read_text("utf-8"))["items"]:
        found["json"] |= {img.get("src") for img in imgs(item["content_html"])}
    for slug in ("my-post", "flat"):
        email = lxml.html.fromstring((out / f"email/{slug}/index.html").read_bytes())
        found["email"] |= {img.get("src") for img in email.xpath("//img")}
        found["email text"] |= set(re.findall(r"\((https://\S+\.(?:png|jpg|svg))\)", (out / f"email/{slug}/email.txt").read_text("utf-8")))
    assert "/blog/posts/my-post/wide.jpg" in found["index"]
    for where in ("rss", "atom", "json", "email", "email text"):
        assert all(url.startswith(("https://example.org/blog/", "https://example.com/")) for url in found[where]), found[where]
        assert {f"{BASE}posts/my-post/wide.jpg", f"{BASE}images/logo.png", f"{BASE}posts/flat/small.png"} <= found[where], where
    assert len(found["page"]) == 8  # 5 files, 2 resized copies of the wide still, and the remote image
    with serve_directory(out) as server:
        for where, urls in found.items():
            for url in urls - {"https://example.com/remote.png"}:
                data = fetch(local(url, server))
                if not url.endswith(".svg"):
                    with Image.open(io.BytesIO(data)) as im:
                        im.load()
                assert data, f"{url} from the {where}"
        assert fetch(local("/blog/posts/my-post/wide.jpg", server)) == (root / "posts/my-post/wide.jpg").read_bytes()


def test_pages_get_sizes_and_wide_images_resized_copies(tmp_path: Path) -> None:
    root = image_site(tmp_path / "site")
    build(root, OPTS)
    out = root / "out"
    by_alt = {img.get("alt"): img for img in lxml.html.fromstring((out / "posts/my-post/index.html").read_bytes()).cssselect(".prose img")}
    assert (by_alt["wide"].get("width"), by_alt["wide"].get("height")) == ("1600", "900")
    assert (by_alt["small"].get("width"), by_alt["small"].get("height")) == ("320", "180")
    assert (by_alt["raw"].get("width"), by_alt["raw"].get("height")) == ("100", "50")  # the author's width kept, height in proportion
    assert by_alt["vector"].get("width") is None and by_alt["remote"].get("width") is None
    assert all(by_alt[alt].get("srcset") is None for alt in ("small", "beside", "logo", "vector", "remote"))  # none wider than the column
    variants = srcset_urls(by_alt["wide"])
    assert [v.rsplit("/", 1)[1].split("-")[1] for v in variants[:2]] == ["480w", "960w"] and variants[2] == "/blog/posts/my-post/wide.jpg"
    assert by_alt["wide"].get("sizes") == "(max-width: 640px) 100vw, 640px"
    for url, width in zip(variants[:2], (480, 960), strict=True):
        with Image.open(out / url.removeprefix("/blog/")) as im:
            assert (im.format, im.size) == ("JPEG", (width, round(900 * width / 1600)))
            assert "exif" not in im.info


def test_email_images_get_their_real_width_capped_at_the_column_never_upscaled(tmp_path: Path) -> None:
    root = image_site(tmp_path / "site")
    build(root, OPTS)
    email = lxml.html.fromstring((root / "out/email/my-post/index.html").read_bytes())
    by_alt = {img.get("alt"): img for img in email.xpath("//img")}
    assert (by_alt["wide"].get("width"), by_alt["wide"].get("height")) == ("552", str(round(900 * 552 / 1600)))
    assert (by_alt["small"].get("width"), by_alt["small"].get("height")) == ("320", "180")  # no longer blown up to 552
    assert (by_alt["logo"].get("width"), by_alt["logo"].get("height")) == ("200", "100")
    assert (by_alt["raw"].get("width"), by_alt["raw"].get("height")) == ("100", "50")
    assert by_alt["remote"].get("width") == "552" and by_alt["remote"].get("height") is None  # a size nobody read: as before
    assert "max-width:320px" in by_alt["small"].get("style").replace(" ", "")
    assert all(img.get("srcset") is None for img in by_alt.values())


def test_same_name_twice_in_a_post_and_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # taken with the phone turned: shown a quarter turned, 800 wide and 1200 high
    body = "![a](one/x.png) ![b](two/x.png) ![c](one/x.png)\n\n![turned](turned.jpg)\n"
    root = write_site(
        tmp_path,
        {
            "p/index.md": post_text("P", body=body),
            "p/one/x.png": picture((10, 10)),
            "p/two/x.png": picture((20, 10)),
            "p/turned.jpg": picture((1200, 800), "JPEG", exif=exif),
        },
    )
    build(root, OPTS)
    by_alt = {img.get("alt"): img for img in lxml.html.fromstring((root / "out/posts/p/index.html").read_bytes()).cssselect(".prose img")}
    assert by_alt["a"].get("src") == by_alt["c"].get("src") == "/blog/posts/p/x.png"
    second = by_alt["b"].get("src")
    assert second.startswith("/blog/posts/p/x-") and second != by_alt["a"].get("src")
    assert (root / "out" / second.removeprefix("/blog/")).read_bytes() == (root / "posts/p/two/x.png").read_bytes()
    assert (by_alt["turned"].get("width"), by_alt["turned"].get("height")) == ("800", "1200")
    [small] = srcset_urls(by_alt["turned"])[:1]
    with Image.open(root / "out" / small.removeprefix("/blog/")) as im:
        assert im.size == (480, 720)  # made upright


def test_an_animated_gif_is_copied_without_resized_copies(tmp_path: Path) -> None:
    frames = [Image.new("P", (800, 400), i) for i in (1, 2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    root = write_site(tmp_path, {"p/index.md": post_text("P", body="![anim](anim.gif)"), "p/anim.gif": buffer.getvalue()})
    build(root, OPTS)
    img = lxml.html.fromstring((root / "out/posts/p/index.html").read_bytes()).cssselect(".prose img")[0]
    assert (img.get("width"), img.get("height"), img.get("srcset")) == ("800", "400", None)
    assert sorted(p.name for p in (root / "out/posts/p").iterdir()) == ["anim.gif", "index.html"]


def test_image_lines_come_from_the_markdown(tmp_path: Path) -> None:
    text = 'Intro\n\n![a](a.png)\n\n| t |\n|---|\n| ![b](b.png) |\n\nx[^1] y\n<img src=\'c.png\'>\n\n<div>\n\n<img src="d.png">\n<!-- <img src="old.png"> -->\n</div>\n\n![e][ref]\n\n[ref]: e.png\n\n[^1]: ![f](f.png)\n'
    tokens = markup.parse(text)
    refs = markup.image_refs(tokens, text, first_line=10)
    assert [(r.src, r.line) for r in refs] == [("a.png", 12), ("b.png", 16), ("c.png", 19), ("d.png", 23), ("e.png", 29), ("f.png", 31)]


# --- rebuilds -------------------------------------------------------------------------------------


def test_resized_copies_are_the_same_bytes_under_any_hash_seed_and_folder(tmp_path: Path) -> None:
    outputs = []
    for seed in ("1", "2"):
        root = image_site(tmp_path / f"seed-{seed}")
        script = "import datetime as dt, sys; from pathlib import Path; from review_press.build import BuildOptions, build; build(Path(sys.argv[1]), BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)))"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, str(root)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(snapshot(root / "out"))
    first, second = outputs
    assert sum("-480w-" in name or "-960w-" in name for name in first) == 2
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_a_build_with_nothing_changed_reads_no_image_and_resizes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_site(tmp_path / "site")
    build(root, OPTS)
    before = snapshot(root / "out")

    def refuse(*_args: object) -> None:
        raise AssertionError("an image was read or resized again")

    monkeypatch.setattr(images.facts, "read_facts", refuse)
    monkeypatch.setattr(images.files, "resized_copies", refuse)
    _, report = build(root, OPTS)
    assert report.rendered == 0 and report.written == ()
    shutil.rmtree(root / "out")  # the resized copies come from .review-press/cache/images/
    build(root, OPTS)
    assert snapshot(root / "out") == before


def test_an_image_edited_in_place_changes_what_shows_it(tmp_path: Path) -> None:
    root = image_site(tmp_path / "site")
    build(root, OPTS)
    (root / "posts/img/small.png").write_bytes(picture((300, 100)))
    _, report = build(root, OPTS)
    assert {"posts/my-post/small.png", "posts/my-post/index.html", "email/my-post/index.html", "feed.xml"} <= set(report.written)
    img = lxml.html.fromstring((root / "out/posts/my-post/index.html").read_bytes()).xpath("//img[@alt='small']")[0]
    assert (img.get("width"), img.get("height")) == ("300", "100")


# --- bad images -----------------------------------------------------------------------------------


def test_a_missing_image_names_the_post_and_line_and_leaves_out_as_it_was(tmp_path: Path) -> None:
    root = image_site(tmp_path / "site")
    build(root, OPTS)
    before = snapshot(root / "out")
    post = root / "posts/my-post/index.md"
    post.write_text(post.read_text("utf-8") + "\nAnd one more: ![gone](gone.png)\n", "utf-8")
    [message] = problems(root)
    assert f"my-post/index.md:{line_of(post, 'gone.png')}: image 'gone.png' not found" in message
    assert "there is no posts/my-post/gone.png" in message
    assert snapshot(root / "out") == before
    with pytest.raises(PressError, match="gone.png"):
        check(root, OPTS)


def test_the_cli_reports_bad_images_in_one_run_exit_1_no_traceback(tmp_path: Path) -> None:
    body = "![a](gone.png)\n\n![b](empty.png)\n\n![c](/images/nowhere.png)\n"
    root = write_site(tmp_path / "site", {"p/index.md": post_text("P", body=body), "p/empty.png": b""}, NEWSLETTER_TOML)
    done = subprocess.run([sys.executable, "-m", "review_press", "build", "--site", str(root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    for needle in ("gone.png", "empty.png", "nowhere.png"):
        assert f"index.md:{line_of(root / 'posts/p/index.md', needle)}: image " in done.stderr, done.stderr
    assert not (root / "out").exists()


def _noisy_png() -> bytes:
    im = Image.frombytes("RGB", (64, 64), bytes((i * 7919) % 251 for i in range(64 * 64 * 3)))
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


def _corrupt_png() -> bytes:
    data = bytearray(_noisy_png())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_corrupt_png(), "is damaged"),
        (_noisy_png()[:300], "is damaged: image file is truncated"),
        (b"", "is an empty file (0 bytes)"),
        (b"This is text that calls itself a PNG.\n", "is not an image"),
        (png_header(100_000, 100_000), "has more pixels than can be read safely"),  # over twice Pillow's limit: its error
        (png_header(10_000, 10_000), "has more pixels than can be read safely"),  # over it: its warning, made an error
        (picture((8, 8), "TIFF"), "is a TIFF image, which browsers do not show"),
    ],
    ids=["corrupt", "truncated", "zero-bytes", "text", "bomb", "bomb-warning", "tiff"],
)
def test_a_bad_image_file_is_an_error_at_its_line(tmp_path: Path, data: bytes, expected: str) -> None:
    root = write_site(tmp_path, {"p/index.md": post_text("P", body="Intro.\n\n![bad](bad.png)\n"), "p/bad.png": data})
    [message] = problems(root)
    assert f"index.md:{line_of(root / 'posts/p/index.md', 'bad.png')}: image 'bad.png' {expected}" in message, message
    assert not (root / "out").exists()


def test_a_wide_jpeg_damaged_past_its_header_fails_the_build_naming_it(tmp_path: Path) -> None:
    """A JPEG's pixels are decoded only to resize it (reading every photo of a site would cost seconds)."""
    whole = picture((1600, 900), "JPEG", color=(10, 200, 90), quality=95)
    root = write_site(tmp_path, {"p/index.md": post_text("P", body="![w](wide.jpg)"), "p/wide.jpg": whole[: len(whole) // 2]})
    [message] = problems(root)
    assert "posts/p/wide.jpg: cannot be resized: image file is truncated" in message, message
    assert not (root / "out").exists()


def test_an_svg_is_copied_as_it_is_without_a_size(tmp_path: Path) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle r="4"/></svg>'
    root = write_site(tmp_path, {"p/index.md": post_text("P", body="![v](v.svg)"), "p/v.svg": svg})
    build(root, OPTS)
    assert (root / "out/posts/p/v.svg").read_bytes() == svg
    img = lxml.html.fromstring((root / "out/posts/p/index.html").read_bytes()).cssselect(".prose img")[0]
    assert img.get("src") == "/blog/posts/p/v.svg" and img.get("width") is None and img.get("srcset") is None


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("../../../outside.png", "leads out of the site"),
        ("../../press.toml", "is press.toml, outside posts/ and static/"),
        ("/../outside.png", "leads out of static/"),
        ("link.png", "is posts/p/link.png, a link that leads outside posts/ and static/"),
        ("private.png", "is posts/p/private.png, a link that leads outside posts/ and static/"),
    ],
)
def test_an_image_outside_the_site_is_an_error_and_nothing_is_read(tmp_path: Path, src: str, expected: str) -> None:
    (tmp_path / "outside.png").write_bytes(picture((4, 4)))
    root = write_site(tmp_path / "site", {"p/index.md": post_text("P", body=f"Intro.\n\n![x]({src})\n")})
    (root / ".review-press").mkdir()
    (root / ".review-press/secret.png").write_bytes(picture((4, 4)))
    (root / "posts/p/link.png").symlink_to(tmp_path / "outside.png")
    (root / "posts/p/private.png").symlink_to(root / ".review-press/secret.png")
    found = problems(root)
    assert any(f"index.md:{line_of(root / 'posts/p/index.md', src)}: image {src!r} {expected}" in m for m in found), found
    assert not (root / "out").exists()


def test_a_front_matter_image_from_the_root_is_one_url_in_page_feeds_json_ld_and_email(tmp_path: Path) -> None:
    """`image: /images/hero.jpg` on a site under a sub-path: og:image, JSON-LD, the JSON Feed and
    the email's hero all say the same URL, the one body images get (`Config.link`)."""
    root = write_site(
        tmp_path / "site", {"2026-02-01-hero.md": post_text("Hero", date="2026-02-01", image="/images/hero.jpg")}, NEWSLETTER_TOML
    )
    (root / "static" / "images").mkdir(parents=True)
    (root / "static" / "images" / "hero.jpg").write_bytes(picture((800, 450), "JPEG"))
    build(root, OPTS)
    want = BASE + "images/hero.jpg"
    page = (root / "out/posts/hero/index.html").read_text("utf-8")
    assert f'<meta property="og:image" content="{want}">' in page
    ld = json.loads(re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert ld["image"] == want
    assert json.loads((root / "out/feed.json").read_text("utf-8"))["items"][0]["image"] == want
    assert f'src="{want}"' in (root / "out/email/hero/index.html").read_text("utf-8")
