"""Image files as a build sees them: a hash of the bytes, the format and size (Pillow reads
the header; a PNG's chunk checksums are verified; other formats but JPEG are decoded, a JPEG's
pixels only when it is resized), and a cache of those facts by each file's size and mtime.

Each problem (empty, not an image, a format browsers do not show, damaged, more pixels than
Pillow's decompression-bomb limit) is an `ImageProblem`: a message and a hint, which the caller
turns into an error at the line of the post that shows the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import PIL  # the package only (its version): PIL.Image is imported where an image is read

from ..errors import PressError
from ..output import atomic_write
from ..statedir import private_dir

if TYPE_CHECKING:
    from ..config import Config

FORMAT_VERSION = "images-1"  # part of every key and cache: bump when the same input gives other bytes
COLUMN_WIDTH = 640  # the page's text column in CSS px (the theme's --measure, 40rem)
VARIANT_WIDTHS = (480, 960)  # resized copies of an image wider than the column, each only if narrower than it
VECTOR_SUFFIXES = frozenset({".svg", ".svgz"})  # copied as they are: no size is read
WEB_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "ICO", "AVIF"})  # what browsers show (Pillow's names)
RESIZED_AS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}  # formats that get variants, and how they are saved
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default for Image.MAX_IMAGE_PIXELS
ORIENTATION = 0x0112  # EXIF: 5-8 turn the picture a quarter, so width and height swap


class ImageProblem(Exception):
    """What is wrong with one image, and how to fix it; made into a `ContentError` at the image's line."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class ImageFacts:
    """What a build needs to know of an image file: a hash of its bytes, its format and size.

    `format` is Pillow's name (`PNG`, `JPEG`...), None for a vector image (SVG), whose size is
    not read. `width` and `height` are as the picture is shown (EXIF orientation applied).
    """

    sha: str
    format: str | None
    width: int | None
    height: int | None
    animated: bool = False

    @property
    def variant_widths(self) -> tuple[int, ...]:
        """The widths of its resized copies: none unless it is a still wider than the page's column."""
        if self.width is None or self.format not in RESIZED_AS or self.animated or self.width <= COLUMN_WIDTH:
            return ()
        return tuple(w for w in VARIANT_WIDTHS if w < self.width)


def read_facts(path: Path) -> ImageFacts:
    """Hash `path`, and read its format and size with Pillow (decoding it, so a damaged file is
    found here); raise `ImageProblem` for what a browser could not show."""
    from PIL import Image, UnidentifiedImageError

    try:
        with path.open("rb") as f:
            sha = hashlib.file_digest(f, "sha256").hexdigest()
            size = f.tell()
    except OSError as exc:
        raise ImageProblem(f"cannot be read: {exc.strerror}", "check the file's permissions") from None
    if size == 0:
        raise ImageProblem("is an empty file (0 bytes)", "save the image again, or take it out of the post")
    if path.suffix.lower() in VECTOR_SUFFIXES:
        return ImageFacts(sha=sha, format=None, width=None, height=None)
    limit = Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS
    too_big = ImageProblem(
        f"has more pixels than can be read safely (over {limit:,}: a decompression bomb?)",
        "resize it: a page or an email needs a few thousand pixels across at most",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > limit:
                    raise too_big
                if im.format not in WEB_FORMATS:
                    raise ImageProblem(f"is a {im.format} image, which browsers do not show", "save it as JPEG, PNG, WebP or GIF")
                animated = bool(getattr(im, "is_animated", False))
                turned = im.getexif().get(ORIENTATION) in (5, 6, 7, 8)
                fmt = str(im.format)
                if fmt not in ("JPEG", "PNG", "MPO"):
                    im.load()  # a JPEG's header is read, not its pixels: decoding every photo of a site costs seconds
            if fmt == "PNG" and not animated:
                with Image.open(path) as again:
                    again.verify()  # every chunk's checksum (verify comes right after open), without inflating the pixels
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_big from None
    except UnidentifiedImageError:
        raise ImageProblem(
            f"is not an image ({size:,} bytes Pillow cannot read)",
            f"is it really a {path.suffix or 'picture'} file? save it as JPEG, PNG, WebP or GIF",
        ) from None
    except Exception as exc:  # Pillow raises many kinds on a damaged file (OSError, SyntaxError, struct.error...)
        raise ImageProblem(f"is damaged: {exc}", "open it in an image editor and save it again") from None
    if turned:
        width, height = height, width
    return ImageFacts(sha=sha, format=fmt, width=width, height=height, animated=animated)


class FactsCache:
    """`read_facts` remembered by each file's site path, size and mtime (`.review-press/cache/images.json`)."""

    def __init__(self, path: Path | None, entries: Mapping[str, list]) -> None:
        self.path = path
        self.entries = dict(entries)
        self.used: dict[str, list] = {}

    @classmethod
    def load(cls, config: Config) -> FactsCache:
        path = config.state_dir / "cache" / "images.json"
        try:
            data = json.loads(path.read_text("utf-8"))
            fresh = data.get("version") == FORMAT_VERSION and data.get("pillow") == PIL.__version__
            return cls(path, data["files"] if fresh and isinstance(data.get("files"), dict) else {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls(path, {})

    def facts(self, file: Path, rel: str) -> ImageFacts:
        """The facts of the image `file` (`rel`: its path in the site), read again only when its size or mtime changed."""
        try:
            st = file.stat()
        except OSError as exc:
            raise ImageProblem(f"cannot be read: {exc.strerror}", "check the file's permissions") from None
        entry = self.used.get(rel) or self.entries.get(rel)  # a file two posts show is read once
        if isinstance(entry, list) and len(entry) == 7 and entry[:2] == [st.st_size, st.st_mtime_ns]:
            facts = ImageFacts(*entry[2:])
        else:
            facts = read_facts(file)
            entry = [st.st_size, st.st_mtime_ns, *dataclasses.astuple(facts)]
        self.used[rel] = entry
        return facts

    def save(self) -> None:
        """Keep the facts of the images this run used (if any changed); a cache that cannot be written is skipped."""
        if self.path is None or self.used == self.entries:
            return
        try:
            private_dir(self.path.parent.parent)
            self.path.parent.mkdir(exist_ok=True)
            body = {"version": FORMAT_VERSION, "pillow": PIL.__version__, "files": self.used}
            atomic_write(self.path, json.dumps(body, sort_keys=True).encode(), mode=0o600)
        except (OSError, PressError):
            pass
