"""Posts: front matter + Markdown -> `Post`, with every problem reported as `file:line`.

`load_posts` reads `posts/**/*.md`, checks all of them and raises every problem in one
`PressErrors`. Rendered posts are cached by a hash of their bytes (and of whatever else
shapes them), so a rebuild re-renders only the posts that changed. The cache is slim: each
post's Markdown and HTML (`Body`) wait in a pack file under the state folder (one per build
and parsing process), read only where a page, feed or email shows them, so neither the cache nor a build holds every
post's text at once (20,000 posts are ~22 KB each in memory). Then each post's images
are found and placed (`images.resolve_posts`): its HTML points at them where the build puts
them, and a missing or unreadable image is an error at its line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import pickle
import re
import sys
import time
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any, BinaryIO, TypeGuard

from . import markup, sitefiles
from .config import Config
from .errors import BuildError, ContentError, PressError, StorageError, raise_all, write_error
from .forked import map_forked
from .images import Asset, Placed, resolve_posts, rewrite
from .statedir import private_dir

CACHE_VERSION = "posts-4"
PARALLEL_FROM = 200  # below this many uncached posts, a process pool costs more than it saves
KNOWN_KEYS = frozenset({"title", "date", "updated", "tags", "summary", "slug", "draft", "author", "image", "subject", "id", "aliases"})
_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")
_SLUG_OK = re.compile(r"^[\w][\w.-]*$", re.UNICODE)
_FENCES = {"---": "yaml", "+++": "toml"}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # not allowed in XML: feeds and pages would break


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping: the key, and the 0-based lines of both."""

    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


@lru_cache(maxsize=1)
def _yaml_loader() -> type:
    """The YAML loader for front matter, made on first use (a build whose posts are all cached
    parses no YAML and need not import it): without implicit timestamps (dates stay text so a
    bad one is our clear error, not a crash), and without silently dropping a key given twice
    (plain YAML keeps the last one)."""
    import yaml

    class Loader(yaml.CSafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            """A mapping; raises `_DuplicateKey` when one key is written twice in it (merged `<<` keys may be overridden)."""
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: the constructor below names it
                    continue
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


@dataclass(frozen=True)
class Body:
    """A post's Markdown body and its HTML as rendered (its images as written), and the
    Markdown's word count (for reading times: lists show it without reading the text).

    Held here, or (with `file`) kept as a record in a pack file of the posts cache and read each
    time it is asked for: a build of 20,000 posts then holds only what its lists need. Each
    parsing process appends the bodies it makes to a pack of its own (one file per process and
    build, not one per post: creating a file costs more than parsing a short post). A pack
    found shorter than a record's end (gone, cut short) has its posts parsed again, not trusted."""

    markdown: str
    html: str
    words: int
    file: str | None = None  # when set, `markdown` and `html` are "" here: they are in this pack (a str loads faster than a Path)
    size: int = 0  # the record's length in the pack
    offset: int = 0  # where the record starts

    @classmethod
    def of(cls, markdown: str, html: str) -> Body:
        """A body held in memory."""
        return cls(markdown=markdown, html=html, words=len(markdown.split()))

    def texts(self, source: Path | None = None) -> tuple[str, str]:
        """The Markdown and the HTML, read from the pack when the body was put there. A pack
        gone or damaged since is an error naming the post's `source` (a damaged one is removed:
        the next build parses its posts again)."""
        if self.file is None:
            return self.markdown, self.html
        try:
            with open(self.file, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
            check, _, rest = data.partition(b"\n")
            if len(data) != self.size or check.decode("ascii") != hashlib.sha256(rest).hexdigest()[:32]:
                raise ValueError("damaged")
            markdown, html = rest.decode("utf-8").split("\0")
        except (OSError, ValueError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) else "it is damaged"
            if not isinstance(exc, OSError):
                with contextlib.suppress(OSError):
                    os.unlink(self.file)
            raise BuildError(
                f"cannot read the cached text of this post ({self.file}): {problem}", path=source, line=1, hint="build again"
            ) from None
        return markdown, html

    def packed(self, pack: Path) -> Body:
        """This body appended to the pack file `pack` (made if need be; one writer per pack), as a
        body that reads its record from there. The record carries its own checksum."""
        rest = f"{self.markdown}\0{self.html}".encode()  # neither holds a NUL: parse_post refuses control characters
        data = memoryview(hashlib.sha256(rest).hexdigest()[:32].encode() + b"\n" + rest)
        size = len(data)
        try:
            fd = os.open(pack, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                offset = os.fstat(fd).st_size
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(pack, exc) from None
        return Body(markdown="", html="", words=self.words, file=str(pack), size=size, offset=offset)


@dataclass(frozen=True, eq=False)
class Post:
    """One post, parsed and rendered. HTML keeps the author's URLs; feeds and email absolutise them."""

    source: Path
    slug: str
    title: str
    date: dt.datetime
    body: Body  # the Markdown and its HTML: see `body_markdown` and `html`
    summary_html: str
    summary_text: str
    digest: str
    body_line: int = 1
    updated: dt.datetime | None = None
    tags: tuple[str, ...] = ()
    draft: bool = False
    author: str | None = None
    image: str | None = None
    subject: str | None = None
    id: str | None = None  # a stable identity that survives renames (`new` writes one); campaigns follow it
    aliases: tuple[str, ...] = ()  # old site paths that redirect here, normalized by `alias_path`
    meta: Mapping[str, Any] = field(default_factory=dict)  # unknown front matter keys, for templates
    lines: Mapping[str, int] = field(default_factory=dict)  # the line of each front matter key, for errors
    images: tuple[markup.ImageRef, ...] = ()  # the images of the body, as written, with their lines
    assets: tuple[Asset, ...] = ()  # the files its images need in out/ (set by `images.resolve_posts`)
    placed: Mapping[str, Placed] = field(default_factory=dict)  # each image's src as written -> where it is now (likewise)

    @property
    def body_markdown(self) -> str:
        """The Markdown after the front matter, as written."""
        return self.body.texts(self.source)[0]

    @property
    def html(self) -> str:
        """The body's HTML, its images where the build puts them (`images.rewrite`)."""
        return rewrite(self.body.texts(self.source)[1], self.placed)

    @property
    def content_hash(self) -> str:
        """What a reader receives, hashed: title, subject and body. A change means "edited after sending"."""
        text = "\0".join((self.title, self.subject or "", self.body_markdown.strip()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def line_of(self, key: str) -> int:
        """The line of a front matter key (1 when absent): where an error about it points."""
        return self.lines.get(key, 1)

    @property
    def path(self) -> str:
        """The post's site path, e.g. `posts/run-away/`."""
        return f"posts/{self.slug}/"

    @property
    def last_modified(self) -> dt.datetime:
        """`updated` when given, else `date`: what feeds and the sitemap report."""
        return self.updated or self.date


@dataclass(frozen=True)
class _FrontMatter:
    """The raw front matter of one file: its values and the line of each key."""

    data: dict[str, Any]
    lines: dict[str, int]
    body: str
    body_line: int


def _split(text: str, path: Path) -> _FrontMatter:
    """Separate the front matter (YAML between `---`, or TOML between `+++`) from the body."""
    lines = text.split("\n")
    fence = lines[0].rstrip()
    if fence not in _FENCES:
        raise ContentError(
            "missing front matter", path=path, line=1, hint="start the file with a line '---', then title: and date:, then '---'"
        )
    for end in range(1, len(lines)):
        if lines[end].rstrip() == fence or (fence == "---" and lines[end].rstrip() == "..."):
            break
    else:
        raise ContentError(
            f"front matter is not closed: no second {fence!r} line", path=path, line=1, hint=f"end the front matter with a line {fence!r}"
        )
    source = "\n".join(lines[1:end])
    import yaml

    try:
        if _FENCES[fence] == "yaml":
            data = yaml.load(source, Loader=_yaml_loader()) if source.strip() else {}
        else:
            data = tomllib.loads(source + "\n")  # a last line without its newline is reported "at end of document"
    except _DuplicateKey as exc:
        raise ContentError(f"{exc.key!r} is given twice", path=path, line=exc.second + 2, hint=f"first on line {exc.first + 2}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ContentError(
            f"front matter is not valid YAML: {problem}", path=path, line=line, hint='quote values that hold ":" or "#"'
        ) from None
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        line = int(match.group(1)) + 1 if match else end if "end of document" in str(exc) else 2
        if str(exc).startswith("Cannot overwrite a value") and (twice := _toml_twice(lines[1:end], line - 2)):
            key, first = twice
            raise ContentError(f"{key!r} is given twice", path=path, line=line, hint=f"first on line {first + 2}") from None
        raise ContentError(f"front matter is not valid TOML: {str(exc).split(' (at')[0]}", path=path, line=line) from None
    if not isinstance(data, dict):
        raise ContentError("front matter must be a set of key: value lines", path=path, line=2, hint="for example  title: My post")
    key_lines = {}
    for number, line in enumerate(lines[1:end], start=2):
        if match := re.match(r"^([A-Za-z_][\w-]*)\s*[:=]", line):
            key_lines.setdefault(match.group(1), number)
    return _FrontMatter(data=data, lines=key_lines, body="\n".join(lines[end + 1 :]), body_line=end + 2)


_TOML_KEY = re.compile(r"""^\s*(?:"([^"\\]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")


def _toml_twice(source: list[str], index: int) -> tuple[str, int] | None:
    """For TOML's "Cannot overwrite a value" on front matter line `index` (0-based): the key and
    the line of its first use, when a plain key is given twice in one table; else None."""

    def key_at(i: int) -> str | None:
        match = _TOML_KEY.match(source[i]) if 0 <= i < len(source) else None
        return next((g for g in match.groups() if g is not None), None) if match else None

    if (key := key_at(index)) is None:
        return None
    for i in range(index - 1, -1, -1):
        if source[i].lstrip().startswith("["):  # the table's header: no earlier use in this table
            return None
        if key_at(i) == key:
            return key, i
    return None


# Every date must convert to UTC and to any timezone (offsets stay under a day) without
# overflowing, wherever feeds, emails and archives convert it: so a day's margin each side.
EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)
DATE_RANGE_HINT = f"write a date from {EARLIEST.date().isoformat()} to {LATEST.date().isoformat()}"


def _out_of_range(moment: dt.datetime) -> str | None:
    """Why an aware date cannot be used (`0001-01-01T00:00+14:00` is before the year 1 in UTC), or None."""
    try:
        utc = moment.astimezone(dt.UTC)
    except OverflowError:
        return "in UTC it is before the year 1" if moment.year < 5000 else "in UTC it is after the year 9999"
    if utc < EARLIEST:
        return f"in UTC it is before {EARLIEST.date().isoformat()}"
    if utc > LATEST:
        return f"in UTC it is after {LATEST.date().isoformat()}"
    return None


def _shown(value: Any) -> str:
    """A front matter date as the writer wrote it, for an error."""
    return value if isinstance(value, str) else value.isoformat() if isinstance(value, (dt.date, dt.time)) else str(value)


def _datetime(value: Any, tz: dt.tzinfo) -> dt.datetime | None:
    """A front matter date (YAML/TOML value or ISO string) as an aware datetime; None if unreadable."""
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, dt.date):
        result = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "T", 1) if re.match(r"^\d{4}-\d{2}-\d{2} \d", value.strip()) else value.strip()
        try:
            result = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return result.replace(tzinfo=tz) if result.tzinfo is None else result


def slug_from_filename(path: Path, posts_dir: Path | None = None) -> str:
    """`2026-01-05-run-away.md` -> `run-away`; `post-3.md` -> `post-3`; a page bundle (as
    Hugo has them: `my-post/index.md`, or `2026-01-05-my-post/index.md`, beside its images)
    -> `my-post`, its folder's name, unless that folder is `posts_dir` itself."""
    stem = path.stem
    if stem == "index" and path.parent.name and (posts_dir is None or path.parent != posts_dir):
        stem = path.parent.name
    return _DATE_PREFIX.sub("", stem) or stem


def slugify(text: str) -> str:
    """A title as a URL slug: lower case, ASCII where it can be, words joined by `-`."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or text
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-_") or "post"


def _check_slug(slug: Any) -> str | None:
    if not isinstance(slug, str) or not slug:
        return "slug must be a non-empty string"
    if "/" in slug or "\\" in slug or ".." in slug:
        return f"slug {slug!r} must not contain '/', '\\' or '..'"
    if not _SLUG_OK.match(slug):
        return f"slug {slug!r} may hold only letters, digits, '-', '_' and '.', and must not start with '.' or '-'"
    return None


def alias_path(value: str) -> str | None:
    """An `aliases:` entry as the site path of its redirect page, or None if it is not a safe path.

    `/old/path/` and `old/path/` -> `old/path/`; `/2019/old.html` -> `2019/old.html`; a bare
    name without `/` is an old slug: `old-name` -> `posts/old-name/`.
    """
    text = value.strip()
    if not text or any(c in text for c in "\\?#%\"'<>\x00") or "://" in text or any(c.isspace() for c in text):
        return None
    if "/" not in text:
        return None if _check_slug(text) else f"posts/{text}/"
    parts = text.strip("/").split("/")
    if not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    path = "/".join(parts)
    return path if path.endswith((".html", ".htm")) else path + "/"


def _check_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or any(c in value for c in "\r\n\0"):
        return None
    return value.strip()


def parse_post(path: Path, raw: bytes, config: Config, digest: str = "") -> Post:
    """One file's bytes -> `Post`; raise `PressErrors` naming every problem in it."""
    if not raw.strip():
        raise ContentError("file is empty", path=path, line=1, hint="a post needs front matter with a title and a date")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContentError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", path=path, line=line, hint="save the file as UTF-8") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if (bad := _CONTROL.search(text)) is not None:
        raise ContentError(
            f"the text holds a control character (U+{ord(bad.group()):04X}), which no page, feed or email may carry",
            path=path,
            line=text.count("\n", 0, bad.start()) + 1,
            hint="delete it (it is invisible in most editors: it may have come with a paste)",
        )
    fm = _split(text, path)
    data, errors = fm.data, []

    def err(key: str, message: str, hint: str | None = None) -> None:
        errors.append(ContentError(message, path=path, line=fm.lines.get(key, 1), hint=hint))

    def text_value(key: str, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                err(key, f"missing {key!r}", f"add a line  {key}: ...  to the front matter")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or (required and not value.strip()):
            err(key, f"{key!r} must be text, not {type(value).__name__}")
            return None
        if key in {"title", "subject"} and ("\n" in value or "\r" in value):
            err(key, f"{key!r} must be on one line")
            return None
        return value.strip()

    title = text_value("title", required=True)
    date = None
    if "date" not in data:
        err("date", "missing 'date'", "add a line  date: 2026-01-01  (or 2026-01-01T09:00:00+01:00)")
    elif (date := _datetime(data["date"], config.tz)) is None:
        err("date", f"cannot read date {data['date']!r}", "write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]")
    elif problem := _out_of_range(date):
        err("date", f"date {_shown(data['date'])!r} is out of range: {problem}", DATE_RANGE_HINT)
    updated = None
    if data.get("updated") is not None and (updated := _datetime(data["updated"], config.tz)) is None:
        err("updated", f"cannot read updated date {data['updated']!r}", "write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]")
    elif updated is not None and (problem := _out_of_range(updated)):
        err("updated", f"updated date {_shown(data['updated'])!r} is out of range: {problem}", DATE_RANGE_HINT)
    tags: tuple[str, ...] = ()
    raw_tags = data.get("tags")
    if raw_tags is not None:
        if not isinstance(raw_tags, list):
            err("tags", f"'tags' must be a list, not {type(raw_tags).__name__}", "write  tags: [crime, tv]")
        elif not all(isinstance(t, (str, int, float)) and not isinstance(t, bool) and str(t).strip() for t in raw_tags):
            err("tags", "every tag must be non-empty text", "write  tags: [crime, tv]")
        else:
            tags = tuple(dict.fromkeys(str(t).strip() for t in raw_tags))
    draft = data.get("draft", False)
    if not isinstance(draft, bool):
        err("draft", f"'draft' must be true or false, not {draft!r}")
    slug = data.get("slug", slug_from_filename(path, config.posts_dir))
    if isinstance(slug, (int, float)) and not isinstance(slug, bool):
        slug = str(slug)
    if problem := _check_slug(slug):
        err("slug", problem, "use letters, digits and '-', e.g. run-away-review")
    summary, author, image, subject = (text_value(k) for k in ("summary", "author", "image", "subject"))
    if image and (problem := markup.image_url_problem(image)):
        err("image", problem, "write a path such as /images/cover.jpg, or an https:// URL")
    post_id = None
    if "id" in data and (post_id := _check_id(data["id"])) is None:
        err("id", f"'id' must be one line of text, not {data['id']!r}", "review-press new writes one; any unique text will do")
    aliases: list[str] = []
    raw_aliases = data.get("aliases")
    if raw_aliases is not None and not isinstance(raw_aliases, (str, list)):
        err("aliases", f"'aliases' must be a list of old URLs, not {type(raw_aliases).__name__}", "write  aliases: [/posts/old-name/]")
    elif raw_aliases is not None:
        for value in [raw_aliases] if isinstance(raw_aliases, str) else raw_aliases:
            target = alias_path(value) if isinstance(value, str) else None
            if target is None:
                err("aliases", f"alias {value!r} is not a site path", "write old URLs as  aliases: [/posts/old-name/, old-slug]")
            elif target not in aliases:
                aliases.append(target)
    raise_all(errors)
    assert title is not None and date is not None
    body = fm.body
    rendered = markup.render_with_summary(body, first_line=fm.body_line)
    # front matter is never raw HTML: a `summary:` is inline Markdown, sanitised (the body's own summary is the author's HTML)
    summary_html = markup.render_summary(summary) if summary else markup.render(rendered.summary_markdown)
    return Post(
        source=path,
        slug=slug,
        title=title,
        date=date,
        updated=updated,
        tags=tags,
        body=Body.of(body, rendered.html),
        body_line=fm.body_line,
        summary_html=summary_html,
        summary_text=markup.plain_text(markup.sanitize(summary_html)),  # no script text in descriptions, feeds or preheaders
        digest=digest,
        draft=draft,
        author=author,
        image=image,
        subject=subject,
        id=post_id,
        aliases=tuple(aliases),
        meta={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        lines=fm.lines,
        images=rendered.images,
    )


def post_listing(config: Config) -> sitefiles.Listing:
    """Every `*.md` under posts/ (hidden files and folders skipped), in a stable order, and an
    error for every symlink that leads out of the site (or round in a loop): see `sitefiles`."""
    return sitefiles.walk(
        config.posts_dir,
        site=config.root,
        error=ContentError,
        hidden=False,
        keep=lambda name: name.endswith(".md") and not name.startswith("_"),
    )


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """A hash of the code that shapes a `Post`: editing the renderer invalidates the cache by itself."""
    h = hashlib.sha256()
    for module in (markup, sys.modules[__name__]):
        h.update(Path(module.__file__ or "").read_bytes())
    return h.hexdigest()[:12]


def _cache_path(config: Config) -> Path:
    return config.state_dir / "cache" / "posts.pickle"


Stamp = tuple[int, int, int, int]  # a file's size, mtime_ns, ctime_ns and inode: any write changes one


@dataclass(frozen=True)
class _Cache:
    """What the posts cache holds: each parsed post by its key, and each file's `Stamp` with the
    key its bytes had, so that a file unchanged since is not read again. `salt` is what the keys
    were made with (the code and the time zone): with another, the stamps say nothing."""

    salt: bytes
    posts: dict[str, Post]
    stamps: dict[str, tuple[Stamp, str]]  # a post file's path under posts/ -> (its stamp, its key)


_PATH = type(Path())  # the concrete class (PosixPath here): the only paths the cache writes as text


class _CachePickler(pickle.Pickler):
    """Writes each `Path` (a post's `source`) as its text, for `_CacheUnpickler` to give back."""

    def persistent_id(self, obj: object) -> str | None:
        return str(obj) if type(obj) is _PATH else None


class _CacheUnpickler(pickle.Unpickler):
    """Gives back for each path the listing's own `Path` of that file (making thousands of
    `Path`s again was a fifth of a nothing-changed build's reading of the cache)."""

    def __init__(self, file: BinaryIO, listed: Mapping[str, Path]) -> None:
        super().__init__(file)
        self.listed = listed

    def persistent_load(self, pid: object) -> Path:
        if not isinstance(pid, str):
            raise pickle.UnpicklingError("not a path")
        return self.listed.get(pid) or Path(pid)


def _read_cache(config: Config, salt: bytes, listed: Mapping[str, Path]) -> _Cache:
    try:
        with _cache_path(config).open("rb") as f:
            cache = _CacheUnpickler(f, listed).load()
        if isinstance(cache, _Cache):
            return cache if cache.salt == salt else _Cache(salt, cache.posts, {})
    except (OSError, pickle.PickleError, EOFError, AttributeError, ValueError, TypeError, ImportError):
        pass
    return _Cache(salt, {}, {})


def _write_cache(config: Config, cache: _Cache) -> None:
    path = _cache_path(config)
    tmp = path.with_suffix(".tmp")
    try:
        private_dir(config.state_dir)
        path.parent.mkdir(exist_ok=True)
        with tmp.open("wb") as f:
            _CachePickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(cache)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None


def _packs_dir(config: Config) -> Path:
    """The folder of the packs of the posts' bodies."""
    return config.state_dir / "cache" / "bodies"


def _pack_file(config: Config, name: str) -> Path:
    """The pack this process appends the bodies it parses to, in a build whose packs are named `name`."""
    return _packs_dir(config) / f"{name}-{os.getpid()}.pack"


def _usable(cached: Post | None, path: Path, sizes: dict[str, int]) -> TypeGuard[Post]:
    """Whether a cached post stands for the file at `path` and its body is still in its pack, as
    it was written (not gone, not cut short); `sizes` remembers each pack's size for the rest of
    the load (one stat per pack)."""
    if cached is None or not (cached.source is path or cached.source == path):  # the cache gives back the listing's own paths
        return False
    file = cached.body.file
    if file is None:
        return False
    if (size := sizes.get(file)) is None:
        try:
            size = sizes[file] = os.stat(file).st_size
        except OSError:
            size = sizes[file] = -1
    return size >= cached.body.offset + cached.body.size


def _parse_job(job: tuple[Path, bytes, Config, str, str | None]) -> Post | PressError:
    """Parse one post and, with a `pack` name, append its body to this process's pack (so only
    the slim post comes back); a problem comes back as a value, not raised across processes."""
    path, raw, config, key, pack = job
    try:
        post = parse_post(path, raw, config, digest=key[:16])
        return dataclasses.replace(post, body=post.body.packed(_pack_file(config, pack))) if pack else post
    except PressError as exc:
        return exc


def _parse_many(jobs: list[tuple[Path, bytes, Config, str, str | None]]) -> list[Post | PressError]:
    """Parse posts, on every core when there are many (Markdown rendering dominates a cold build).
    The forked parsers inherit the jobs (`forked.map_forked`): the files' bytes and the config are
    never pickled to them, which at 20,000 posts was hundreds of MB; only the parsed posts come
    back, slim when their bodies went to the cache."""
    return map_forked(_parse_job, jobs, PARALLEL_FROM)


ABANDONED_AFTER_NS = 3600 * 10**9  # a pack no cache names, untouched this long, was left by a killed or failed build


def _forget(config: Config, gone: Iterable[Post], kept: Iterable[Post], now_ns: int) -> None:
    """Remove the packs that held only bodies of posts the cache no longer holds (edited,
    renamed or deleted), and packs no cache names that were left an hour ago or more (by a build
    killed while parsing: a pack being written by a build running now is younger), and empty
    folders (of the one-file-per-body cache before packs). A pack with one body still in use
    stays, so at most one old copy of each post is left in packs until the posts beside it
    change too."""
    live = {p.body.file for p in kept}
    for file in {p.body.file for p in gone} - live:
        if file is not None:
            with contextlib.suppress(OSError):
                os.unlink(file)
    with contextlib.suppress(OSError), os.scandir(_packs_dir(config)) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    os.rmdir(entry.path)  # only when empty
                elif entry.path not in live and entry.stat(follow_symlinks=False).st_mtime_ns < now_ns - ABANDONED_AFTER_NS:
                    os.unlink(entry.path)


def load_posts(config: Config, use_cache: bool = True) -> tuple[Post, ...]:
    """Read and check every post; raise all problems at once, including duplicate slugs.

    The result is in file order; `site.make_site` sorts and filters it.
    """
    salt = f"{CACHE_VERSION}|{_code_digest()}|{config.timezone}".encode()
    fresh: dict[str, Post] = {}
    stamps: dict[str, tuple[Stamp, str]] = {}
    now = time.time_ns()
    results: list[Post | PressError | None] = []
    jobs: list[tuple[Path, bytes, Config, str, str | None]] = []
    pack = f"{now:x}-{os.urandom(4).hex()}" if use_cache else None  # this build's packs: one per parsing process
    sizes: dict[str, int] = {}
    slots: list[int] = []
    listing = post_listing(config)
    cache = _read_cache(config, salt, {str(p): p for p in listing.files}) if use_cache else _Cache(salt, {}, {})
    prefix = len(str(config.posts_dir)) + 1
    for path in listing.files:
        rel = str(path)[prefix:]  # its path under posts/ (`walk` lists it there)
        try:
            st = listing.stats.get(str(path)) or path.stat()
            if st.st_size > config.max_post_bytes:
                raise ContentError(
                    f"file is {st.st_size:,} bytes, over the limit of {config.max_post_bytes:,}",
                    path=path,
                    line=1,
                    hint="raise max_post_bytes in press.toml if this is meant",
                )
            stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            known = cache.stamps.get(rel)
            if known is not None and known[0] == stamp and _usable(cached := cache.posts.get(known[1]), path, sizes):
                fresh[known[1]], stamps[rel] = cached, known  # as it was when its key was made: not read again
                results.append(cached)
                continue
            raw = sitefiles.read_inside(path, config.root, ContentError)
        except PressError as exc:
            results.append(exc)
            continue
        except OSError as exc:
            results.append(ContentError(f"cannot read: {exc.strerror}", path=path))
            continue
        # the same file in another checkout gets the same key: the digest feeds output keys and Message-IDs
        key = hashlib.sha256(salt + PurePath(rel).as_posix().encode() + b"\0" + raw).hexdigest()
        if sitefiles.settled(st, now):
            stamps[rel] = (stamp, key)
        if _usable(cached := cache.posts.get(key), path, sizes):
            fresh[key] = cached
            results.append(cached)
        else:
            slots.append(len(results))
            results.append(None)
            jobs.append((path, raw, config, key, pack))
    keys = [job[3] for job in jobs]
    if jobs and use_cache:  # the folder of the packs the parsers put bodies in
        private_dir(config.state_dir)
        bodies = _packs_dir(config)
        try:
            bodies.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(bodies, exc) from None
    parsed = _parse_many(jobs)
    jobs.clear()  # the files' bytes are not needed any more
    if failed := next((r for r in parsed if isinstance(r, StorageError)), None):
        raise failed  # a full disk fails every post alike: once is enough
    for slot, key, result in zip(slots, keys, parsed, strict=True):
        results[slot] = result
        if isinstance(result, Post):
            fresh[key] = result
    posts = [r for r in results if isinstance(r, Post)]
    errors: list[PressError] = [*listing.errors, *(e for r in results if isinstance(r, PressError) for e in getattr(r, "errors", (r,)))]
    by_slug: dict[str, Post] = {}
    by_id: dict[str, Post] = {}
    for post in posts:
        if post.id is not None and (twin := by_id.setdefault(post.id, post)) is not post:
            errors.append(
                ContentError(
                    f"id {post.id!r} is also the id of {twin.source}: two posts cannot share one",
                    path=post.source,
                    line=post.line_of("id"),
                    hint="a copied file keeps the id of its original: give the copy (not the post already sent) a new id",
                )
            )
        if (other := by_slug.get(post.slug)) is not None:
            errors.append(
                ContentError(
                    f"slug {post.slug!r} is also used by {other.source}",
                    path=post.source,
                    line=1,
                    hint="give one of them a different slug: in its front matter",
                )
            )
        else:
            by_slug[post.slug] = post
    if use_cache and (fresh.keys() != cache.posts.keys() or stamps != cache.stamps):
        _write_cache(config, _Cache(salt, fresh, stamps))
        _forget(config, (cache.posts[k] for k in cache.posts.keys() - fresh.keys()), fresh.values(), now)
    posts, image_errors = resolve_posts(config, posts, use_cache=use_cache)  # their images found, checked, placed in out/
    raise_all(errors + image_errors)
    return tuple(posts)
