"""Images in posts: where each one is, what it is (read with Pillow), and what a build writes for it.

An image is written as an editor previews it (and as Hugo reads it): a relative path starts
from the post's file (`x.png` beside `posts/my-post/index.md`, `img/x.png`, `../img/x.png`),
a root-relative one from `static/` (`/images/x.png` is `static/images/x.png`). `resolve_posts`
finds each image of each post and checks it, then rewrites the post's HTML so every edition
can reach it:

- a file in posts/ is copied beside the post's page (`out/posts/<slug>/x.png`; a second file
  of the same name in one post gets a short hash of its bytes in its name);
- a file in static/ keeps the URL static/ gives it (`out/images/x.png`);
- `src` becomes the file's URL from the site's root (`/posts/<slug>/x.png`, under the
  base_url's path), which works on the post's page, on index and tag pages (summaries), and
  becomes absolute in the feeds and the email; a link to the same file (`[![a](x.png)](x.png)`)
  follows it;
- raster images get `width` and `height` (their real size, upright as EXIF orientation shows
  them; an author's own `width` keeps its value and `height` follows in proportion), so pages
  do not shift as images load and the email shows each at its real width, capped at its column;
- one wider than the page's column (`COLUMN_WIDTH`) gets resized copies (`VARIANT_WIDTHS`,
  same format, EXIF and text chunks dropped, fixed quality: the same bytes on every build) in
  `srcset`, named by a hash of the original's bytes and cached in `.review-press/cache/images/`.

Remote (`https:`, `//host`) and `data:` images, and fragments, are left as written. SVG is
copied as it is, without a size. A missing image, one outside posts/ and static/ (`..` out of
the site, a symlink out of it), an empty or damaged file, a file that is not an image (a
`.png` that is text), a format browsers do not show, or one with more pixels than Pillow's
decompression-bomb limit is an error naming the post's file and the line of the image.

The facts of each file (hash, format, size) are cached in `.review-press/cache/images.json`
by its size and mtime, so a build where nothing changed reads no image. A JPEG's header is
read, its pixels only when it is resized (a damaged one wide enough to be resized fails the
build, naming the file); a PNG's checksums are verified; other formats are decoded.

`facts` reads files, `place` finds and places a post's images, `files` plans what a build
writes for them; content.py calls `resolve_posts`, build.py `plan_images`, the email's plain
text `retarget`.
"""

from __future__ import annotations

from .facts import COLUMN_WIDTH, VARIANT_WIDTHS, FactsCache, ImageFacts, ImageProblem, read_facts
from .files import Asset, Resizer, plan_images, render_asset, resized_copies
from .place import Layout, Placed, Placement, locate, place, resolve_posts, retarget, rewrite

__all__ = [
    "COLUMN_WIDTH",
    "VARIANT_WIDTHS",
    "Asset",
    "FactsCache",
    "ImageFacts",
    "ImageProblem",
    "Layout",
    "Placed",
    "Placement",
    "Resizer",
    "locate",
    "place",
    "plan_images",
    "read_facts",
    "render_asset",
    "resized_copies",
    "resolve_posts",
    "retarget",
    "rewrite",
]
