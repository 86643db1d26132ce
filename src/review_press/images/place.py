"""Where a post's images are: each `src` found (`locate`), checked and placed (`place`), and the
post's HTML (`rewrite`) and Markdown tokens (`retarget`) pointed at where the build puts it."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import html
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from .. import markup
from ..errors import ContentError, PressError
from .facts import COLUMN_WIDTH, FactsCache, ImageProblem
from .files import Asset, split_name

if TYPE_CHECKING:
    from markdown_it.token import Token

    from ..config import Config
    from ..content import Post

RESERVED_NAMES = frozenset({"index.html"})  # the post's page lives beside its images
_URL_SAFE = "/-._~!$&'()*+,;=:@"
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_A_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\s([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_PX = re.compile(r"^\s*(\d+)(?:px)?\s*$")


@dataclass(frozen=True)
class Placed:
    """Where an image of a post ended up: its URL from the site root, its size, and its `srcset` ("" for none)."""

    url: str
    width: int | None
    height: int | None
    srcset: str = ""


@dataclass(frozen=True)
class Found:
    """An image file of a post: its path (as reached, links not resolved), its path in the site
    (`posts/x/y.png`, for messages and the cache), and whether it lies in static/ (and where there)."""

    file: Path
    rel: str
    static_rel: str | None = None


@dataclass(frozen=True)
class Layout:
    """The folders an image may come from, as absolute paths, and the URL path of the site's root."""

    root: str
    posts: str
    static: str
    prefix: str  # "/" or "/blog/"
    real: tuple[str, str, str]  # root, posts and static with every link resolved

    @classmethod
    def of(cls, config: Config) -> Layout:
        root = os.path.abspath(config.root)
        posts, static = os.path.join(root, "posts"), os.path.join(root, "static")
        prefix = urlsplit(config.base_url).path or "/"
        real = (os.path.realpath(root), os.path.realpath(posts), os.path.realpath(static))
        return cls(root, posts, static, prefix if prefix.endswith("/") else prefix + "/", real)

    def published(self, path: str) -> bool:
        """Whether `path`, every link on the way resolved, lies in posts/ or static/ (so inside the site)."""
        real = os.path.realpath(path)
        return _below(real, self.real[0]) and (_below(real, self.real[1]) or _below(real, self.real[2]))

    def url(self, out_rel: str) -> str:
        """The URL from the host's root of a file at `out_rel` under out/."""
        return self.prefix + quote(out_rel, safe=_URL_SAFE)


def _below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _shown(path: str, root: str) -> str:
    """`path` (normalised, below `root`) as a path from `root` with `/`."""
    return path[len(root.rstrip(os.sep)) + 1 :].replace(os.sep, "/") if _below(path, root) else PurePosixPath(Path(path)).as_posix()


def locate(src: str, post_file: Path, layout: Layout) -> Found | None:
    """The file an image `src` of the post at `post_file` names, or None when it is not a local
    file (a remote or `data:` URL, a fragment); raises `ImageProblem` when it cannot be used."""
    text = src.strip()
    if not text or text.startswith(("#", "//")) or markup.url_scheme(text) is not None:
        return None
    path = unquote(urlsplit(text).path)
    if not path:
        return None
    if path.startswith("/"):
        rest = path[len(layout.prefix) :] if path.startswith(layout.prefix) else path.lstrip("/")
        lexical = os.path.normpath(os.path.join(layout.static, rest))
        if not _below(lexical, layout.static) or lexical == layout.static:
            raise ImageProblem(
                "leads out of static/", "a path starting with / is looked for in static/: /images/x.png is static/images/x.png"
            )
    else:
        lexical = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(post_file)), path))
        if not _below(lexical, layout.root):
            raise ImageProblem(
                "leads out of the site", "a relative path starts from the post's folder: keep images beside it, or in static/"
            )
        if not (_below(lexical, layout.posts) or _below(lexical, layout.static)):
            raise ImageProblem(
                f"is {_shown(lexical, layout.root)}, outside posts/ and static/",
                "move it beside the post (or into static/) and write its path from there",
            )
    rel = _shown(lexical, layout.root)
    try:
        mode = os.stat(lexical).st_mode
    except OSError:
        start = (
            "a path starting with / is looked for in static/" if path.startswith("/") else "a relative path starts from the post's folder"
        )
        raise ImageProblem("not found", f"there is no {rel}: {start}") from None
    if not layout.published(lexical):
        raise ImageProblem(
            f"is {rel}, a link that leads outside posts/ and static/",
            "nothing from elsewhere on the machine is published: copy the file in",
        )
    if not stat.S_ISREG(mode):
        raise ImageProblem(f"is {rel}, which is not a file", "name an image file")
    static_rel = _shown(lexical, layout.static) if _below(lexical, layout.static) else None
    return Found(file=Path(lexical), rel=rel, static_rel=static_rel)


# --- placing a post's images ---------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """A post's images placed: each `src` as written -> where it is now, and the files to write."""

    placed: Mapping[str, Placed]
    assets: tuple[Asset, ...]


def place(post: Post, layout: Layout, cache: FactsCache) -> tuple[Placement, list[PressError]]:
    """Find, check and place every image of `post` (see `review_press.images`); problems name its file and line."""
    placed: dict[str, Placed] = {}
    assets: dict[str, Asset] = {}
    names: dict[str, str] = {}  # casefolded copy name in the post's folder -> the site path of its file
    errors: list[PressError] = []
    for ref in post.images:
        if ref.src in placed:
            continue
        try:
            found = locate(ref.src, post.source, layout)
            if found is None:
                continue
            facts = cache.facts(found.file, found.rel)
        except ImageProblem as problem:
            errors.append(ContentError(f"image {ref.src!r} {problem.message}", path=post.source, line=ref.line, hint=problem.hint))
            continue
        if found.static_rel is not None:
            out_rel = found.static_rel
        else:
            name = PurePosixPath(found.rel).name
            owner = names.get(name.casefold())
            if name.casefold() in RESERVED_NAMES or (owner is not None and owner != found.rel):
                stem, ext = split_name(name)
                name = f"{stem}-{facts.sha[:8]}{ext}"
            names[name.casefold()] = found.rel
            out_rel = post.path + name
            assets[out_rel] = Asset(out_rel, found.file, facts.sha, facts.format)
        folder, _, name = out_rel.rpartition("/")
        stem, ext = split_name(name)
        candidates = []
        for width in facts.variant_widths:
            variant = f"{folder + '/' if folder else ''}{stem}-{width}w-{facts.sha[:10]}{ext}"
            assets[variant] = Asset(variant, found.file, facts.sha, facts.format, width)
            candidates.append(f"{layout.url(variant)} {width}w")
        url = layout.url(out_rel)
        srcset = ", ".join([*candidates, f"{url} {facts.width}w"]) if candidates else ""
        placed[ref.src] = Placed(url=url, width=facts.width, height=facts.height, srcset=srcset)
    return Placement(placed, tuple(assets.values())), errors


def _attributes(tag: str) -> dict[str, tuple[str, int, int]]:
    """A tag's attributes: lower-case name -> (value, entities decoded; the span of `=value` in `tag`)."""
    found: dict[str, tuple[str, int, int]] = {}
    for match in _ATTR.finditer(tag):
        group = next((g for g in (2, 3, 4) if match.group(g) is not None), None)
        if group is None:
            found.setdefault(match.group(1).lower(), ("", match.end(1), match.end(1)))
            continue
        quoted = 1 if group in (2, 3) else 0
        found.setdefault(
            match.group(1).lower(), (html.unescape(match.group(group)), match.start(group) - quoted, match.end(group) + quoted)
        )
    return found


def _set_url(tag: str, span: tuple[int, int], url: str) -> str:
    return f'{tag[: span[0]]}"{html.escape(url, quote=True)}"{tag[span[1] :]}'


def _img(tag: str, placed: Mapping[str, Placed]) -> str:
    attrs = _attributes(tag)
    src = attrs.get("src")
    where = placed.get(src[0]) if src else None
    if src is None or where is None:
        return tag
    tag = _set_url(tag, (src[1], src[2]), where.url)
    extra: dict[str, str] = {}
    width, height = (_PX.match(attrs[k][0]) if k in attrs else None for k in ("width", "height"))
    if where.width and where.height:
        if "width" not in attrs and "height" not in attrs:
            extra |= {"width": str(where.width), "height": str(where.height)}
        elif width and "height" not in attrs:
            extra["height"] = str(round(int(width.group(1)) * where.height / where.width))
        elif height and "width" not in attrs:
            extra["width"] = str(round(int(height.group(1)) * where.width / where.height))
    if where.srcset and "srcset" not in attrs:
        shown = int(width.group(1)) if width else where.width or COLUMN_WIDTH
        column = min(shown, COLUMN_WIDTH)
        extra |= {"srcset": where.srcset, "sizes": f"(max-width: {column}px) 100vw, {column}px"}
    if not extra:
        return tag
    head = tag[:-1].rstrip("/").rstrip()
    return head + "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in extra.items()) + tag[len(head) :]


def _link(tag: str, placed: Mapping[str, Placed]) -> str:
    href = _attributes(tag).get("href")
    where = placed.get(href[0]) if href else None
    return _set_url(tag, (href[1], href[2]), where.url) if href and where else tag


def rewrite(fragment: str, placed: Mapping[str, Placed]) -> str:
    """`fragment` with each placed image's `src` (and a link to the same file) pointing where it
    is now, and `width`/`height`/`srcset`/`sizes` added where the author gave none."""
    if not placed:
        return fragment
    if "<img" in fragment:
        fragment = _IMG_TAG.sub(lambda m: _img(m.group(0), placed), fragment)
    return _A_TAG.sub(lambda m: _link(m.group(0), placed), fragment) if "<a" in fragment else fragment


def retarget(tokens: Sequence[Token], placed: Mapping[str, Placed]) -> Sequence[Token]:
    """A post's Markdown tokens with each placed image's `src`, and links to the same file, where
    `rewrite` puts them in its HTML (for what is made from the tokens: the email's plain text).
    Copies: the tokens given (memoised, shared) are left as they are."""
    if not placed:
        return tokens
    copied = copy.deepcopy(list(tokens))
    for token in copied:
        for tok in (token, *(token.children or ())):
            if tok.type in ("html_block", "html_inline"):
                tok.content = rewrite(tok.content, placed)
            elif tok.type in ("image", "link_open"):
                attr = "src" if tok.type == "image" else "href"
                if (where := placed.get(str(tok.attrGet(attr) or ""))) is not None:
                    tok.attrSet(attr, where.url)
    return copied


def _placed_post(post: Post, placement: Placement) -> Post:
    """`post` with its images placed: the files to write, its summary rewritten (its body's HTML
    is, each time it is read: `Post.html`), and a digest that follows what the HTML says."""
    if not placement.placed:
        return post
    said = "\x1e".join(f"{src}\x1f{p.url}\x1f{p.width}\x1f{p.height}\x1f{p.srcset}" for src, p in placement.placed.items())
    digest = hashlib.sha256(f"{post.digest}\x1d{said}".encode()).hexdigest()[:16]
    return dataclasses.replace(
        post,
        summary_html=rewrite(post.summary_html, placement.placed),
        digest=digest,
        assets=placement.assets,
        placed=placement.placed,
    )


def resolve_posts(config: Config, posts: Sequence[Post], use_cache: bool = True) -> tuple[list[Post], list[PressError]]:
    """Every post with its images placed (see `review_press.images`), and every problem found."""
    if not any(p.images for p in posts):
        return list(posts), []
    layout = Layout.of(config)
    cache = FactsCache.load(config) if use_cache else FactsCache(None, {})
    result: list[Post] = []
    errors: list[PressError] = []
    for post in posts:
        if post.images:
            placement, problems = place(post, layout, cache)
            errors += problems
            post = _placed_post(post, placement)
        result.append(post)
    cache.save()
    return result, errors
