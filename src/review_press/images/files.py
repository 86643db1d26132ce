"""What a build writes for posts' images: the originals from posts/ copied beside their pages,
and the resized copies of wide ones (`resized_copies`: deterministic bytes), made once per
original's hash into `.review-press/cache/images/` (`Resizer`), planned as `Artifact`s."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import PIL  # the package only (its version): PIL.Image is imported where an image is resized

from ..errors import BuildError, PressError, PressErrors
from ..output import Artifact, atomic_write, make_key
from ..statedir import private_dir
from .facts import FORMAT_VERSION, ORIENTATION, RESIZED_AS

if TYPE_CHECKING:
    from ..content import Post
    from ..site import Site

JPEG_QUALITY = 82
WEBP_QUALITY = 80


def split_name(name: str) -> tuple[str, str]:
    """`x.tar.gz` -> (`x.tar`, `.gz`); `README` -> (`README`, "")."""
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if stem else (name, "")


@dataclass(frozen=True)
class Asset:
    """A file the build writes for a post's image: the original copied as it is (`width` None), or a resized copy."""

    path: str  # under out/
    source: Path
    sha: str  # of the original's bytes
    format: str | None
    width: int | None = None

    @property
    def key(self) -> str:
        """What its bytes depend on (the original's bytes, the width; for a resized copy, Pillow too)."""
        return make_key(FORMAT_VERSION, "image", self.sha, self.width, self.format, PIL.__version__ if self.width else "")


def resized_copies(data: bytes, widths: Sequence[int], fmt: str) -> dict[int, bytes]:
    """`data` (an image in format `fmt`, decoded once) resized to each of `widths` px wide, upright,
    in the same format, with only its colour profile kept: the same bytes for the same input, every time."""
    from PIL import Image, ImageOps

    target = RESIZED_AS[fmt]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as original:
            icc = original.info.get("icc_profile")
            if fmt in ("JPEG", "MPO"):  # decoded at the smallest scale still at least as large as the largest copy
                turned = original.getexif().get(ORIENTATION) in (5, 6, 7, 8)
                shown = original.height if turned else original.width
                original.draft(original.mode, (original.width * max(widths) // shown, original.height * max(widths) // shown))
            im = ImageOps.exif_transpose(original) or original
            keep = ("RGB", "L", "CMYK") if target == "JPEG" else ("RGB", "RGBA", "L", "LA")
            if im.mode not in keep:
                alpha = target != "JPEG" and (im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info)
                im = im.convert("RGBA" if alpha else "RGB")
            smalls = {
                w: im.resize((w, max(1, round(im.height * w / im.width))), Image.Resampling.LANCZOS, reducing_gap=3.0) for w in widths
            }
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if target == "JPEG":
        options |= {"quality": JPEG_QUALITY, "optimize": True}
    elif target == "WEBP":
        options |= {"quality": WEBP_QUALITY, "method": 4}
    copies = {}
    for width, small in smalls.items():
        small.info = {}  # no EXIF, XMP or text chunks
        out = io.BytesIO()
        small.save(out, target, **options)
        copies[width] = out.getvalue()
    return copies


class Resizer:
    """The resized copies of one build, made on first demand and kept in `cache_dir` by the
    original's hash: all the missing ones at once, each original decoded once, on every core
    (Pillow decodes, resizes and encodes outside the GIL)."""

    def __init__(self, assets: Sequence[Asset], cache_dir: Path) -> None:
        self.assets = tuple(a for a in assets if a.width is not None and a.format is not None)
        self.cache_dir = cache_dir
        self.started = False
        self.failed: dict[str, PressError] = {}  # by the original's hash

    def cached(self, asset: Asset) -> Path:
        return self.cache_dir / f"{asset.sha}-{asset.width}{split_name(asset.path)[1].lower()}"

    def bytes_of(self, asset: Asset) -> bytes:
        """A resized copy's bytes: from the cache, made with all the others missing, or (the cache unwritable) on its own."""
        for attempt in range(2):
            if asset.sha in self.failed:
                self._raise(asset.sha)
            try:
                return self.cached(asset).read_bytes()
            except OSError:
                pass
            if attempt == 0 and not self.started:
                self.started = True
                self._make_missing()
        made = self._make(asset.source, asset.sha, [asset])
        if isinstance(made, BuildError):
            self.failed[asset.sha] = made
            self._raise(asset.sha)
        return made[asset.width or 0]

    def _raise(self, sha: str) -> NoReturn:
        """The failure of an original's copies, raised for the first of them; nothing more for the others."""
        error, self.failed[sha] = self.failed[sha], PressErrors(())
        raise error

    def _make_missing(self) -> None:
        groups: dict[str, list[Asset]] = {}
        for asset in self.assets:
            if not self.cached(asset).exists():
                groups.setdefault(asset.sha, []).append(asset)
        if not groups:
            return
        try:
            private_dir(self.cache_dir.parent.parent)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except (OSError, PressError):
            return  # a cache that cannot be written: each copy is made on its own
        from concurrent.futures import ThreadPoolExecutor  # imported when there are copies to make: a build with none never needs it

        workers = min(os.cpu_count() or 1, 8, len(groups))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for sha, made in zip(groups, pool.map(self._make_cached, groups.values()), strict=True):
                if isinstance(made, BuildError):
                    self.failed[sha] = made

    def _make_cached(self, group: list[Asset]) -> BuildError | None:
        made = self._make(group[0].source, group[0].sha, group)
        if isinstance(made, BuildError):
            return made
        for asset in {a.width: a for a in group}.values():
            with contextlib.suppress(OSError, PressError):  # if it is not written, reading it back fails: made on its own
                atomic_write(self.cached(asset), made[asset.width or 0], mode=0o600)
        return None

    @staticmethod
    def _make(source: Path, sha: str, group: Sequence[Asset]) -> dict[int, bytes] | BuildError:
        try:
            data = source.read_bytes()
        except OSError as exc:
            return BuildError(f"cannot read: {exc.strerror}", path=source)
        if hashlib.sha256(data).hexdigest() != sha:
            return BuildError("changed while the site was being built", path=source, hint="build again")
        try:
            return resized_copies(data, sorted({a.width or 0 for a in group}), str(group[0].format))
        except Exception as exc:  # Pillow on a file whose header it read: its pixels are damaged, or memory ran out
            return BuildError(f"cannot be resized: {exc}", path=source, hint="open it in an image editor and save it again")


def render_asset(asset: Asset, resizer: Resizer) -> bytes:
    """The bytes of one asset: the original as it is, or a resized copy (see `Resizer`)."""
    if asset.width is not None and asset.format is not None:
        return resizer.bytes_of(asset)
    try:
        return asset.source.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read: {exc.strerror}", path=asset.source) from None


def plan_images(site: Site) -> list[Artifact]:
    """The image files of the site's posts: originals from posts/ copied beside their pages, and resized copies."""
    assets: dict[str, tuple[Asset, Post]] = {}
    for post in site.posts:
        for asset in post.assets:
            assets.setdefault(asset.path, (asset, post))  # a resized copy of a static/ image shared by posts: one file
    resizer = Resizer([a for a, _ in assets.values()], site.config.state_dir / "cache" / "images")
    return [
        Artifact(
            path=path, key=asset.key, render=partial(render_asset, asset, resizer), origin=f"image {asset.source.name} of {post.source}"
        )
        for path, (asset, post) in assets.items()
    ]
