"""schema.org JSON-LD for a post's page: a `BlogPosting`, and a `Review` too when it is rated.

Every post gets a `BlogPosting` (headline, description, datePublished, dateModified, author,
image, url). A post whose front matter has `rating` is a review as well: the same node is typed
`["BlogPosting", "Review"]` and gains `reviewRating`, and `itemReviewed` when `reviewed` names
what it reviews. The front matter keys read (all optional; any other key is ignored here):

    rating: 4.5              # the score: a number from rating_min to rating_max
    rating_max: 5            # the best score (schema.org's bestRating; default 5)
    rating_min: 1            # the worst score (worstRating; default 1, schema.org's default)
    reviewed: Run Away       # the name of what is reviewed (itemReviewed)
    reviewed_type: TVSeries  # its schema.org type, one of `REVIEWED_TYPES` (default CreativeWork)

Without `rating` none of them is read (a template may use them as it likes). With it, a bad
value (text where a number belongs, a rating outside its range, an unknown type) is a
`ContentError` at its front matter line, found when pages are planned (`review_errors`).

The JSON is written for a `<script type="application/ld+json">` in the page: `<`, `>` and `&`
(and U+2028/U+2029) are written as `\\uXXXX` escapes, so a title holding `</script>` or `<!--`
cannot end the script or open a comment; JSON parsers read the escapes back as the characters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .content import Post
from .errors import ContentError, PressError

DEFAULT_BEST = 5
DEFAULT_WORST = 1
DEFAULT_REVIEWED_TYPE = "CreativeWork"
# What a post may review: the schema.org CreativeWork types a review site writes about, and a few others.
REVIEWED_TYPES = frozenset(
    {"CreativeWork", "TVSeries", "TVSeason", "TVEpisode", "Movie", "MovieSeries", "CreativeWorkSeries", "CreativeWorkSeason"}
    | {"Episode", "Book", "BookSeries", "VideoGame", "Game", "MusicAlbum", "MusicRecording", "MusicPlaylist", "Podcast"}
    | {"PodcastSeries", "PodcastEpisode", "Play", "Painting", "VisualArtwork", "Event", "TheaterEvent", "Product", "SoftwareApplication"}
)
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


@dataclass(frozen=True)
class Rating:
    """A post's score on its scale, as front matter gives it (ints stay ints in the JSON)."""

    value: int | float
    best: int | float = DEFAULT_BEST
    worst: int | float = DEFAULT_WORST


@dataclass(frozen=True)
class ReviewMeta:
    """What a rated post says about its review: the rating and, when named, what it reviews."""

    rating: Rating
    reviewed: str | None = None
    reviewed_type: str = DEFAULT_REVIEWED_TYPE


def _number(post: Post, key: str, default: int | float) -> int | float:
    """A front matter number (YAML/TOML number, or text such as "4.5"); `ContentError` if it is not one."""
    value = post.meta.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
        else:
            value = int(value) if value.is_integer() else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ContentError(
            f"{key!r} must be a number, not {post.meta.get(key)!r}", path=post.source, line=post.line_of(key), hint=f"write  {key}: 4.5"
        )
    return value


def _text(post: Post, key: str) -> str | None:
    value = post.meta.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
        raise ContentError(f"{key!r} must be one line of text, not {value!r}", path=post.source, line=post.line_of(key))
    return value.strip()


def review_meta(post: Post) -> ReviewMeta | None:
    """The post's review data from its front matter, or None when it has no `rating`; raises `ContentError`."""
    if post.meta.get("rating") is None:
        return None  # not a review: the other keys are left to templates
    value, best, worst = _number(post, "rating", 0), _number(post, "rating_max", DEFAULT_BEST), _number(post, "rating_min", DEFAULT_WORST)
    if worst >= best:
        raise ContentError(
            f"rating_min {worst} must be below rating_max {best}",
            path=post.source,
            line=post.line_of("rating_min" if "rating_min" in post.meta else "rating_max"),
        )
    if not worst <= value <= best:
        raise ContentError(
            f"rating {value} is outside {worst}..{best}",
            path=post.source,
            line=post.line_of("rating"),
            hint="set rating_max (and rating_min) for another scale, e.g.  rating_max: 10  or  rating_min: 0",
        )
    kind = _text(post, "reviewed_type") or DEFAULT_REVIEWED_TYPE
    if kind not in REVIEWED_TYPES:
        raise ContentError(
            f"reviewed_type {kind!r} is not a schema.org type this site knows",
            path=post.source,
            line=post.line_of("reviewed_type"),
            hint="one of " + ", ".join(sorted(REVIEWED_TYPES)),
        )
    return ReviewMeta(rating=Rating(value=value, best=best, worst=worst), reviewed=_text(post, "reviewed"), reviewed_type=kind)


def review_errors(posts: Iterable[Post]) -> list[PressError]:
    """Every problem with the review keys of `posts` (see the module docstring), for one report."""
    errors: list[PressError] = []
    for post in posts:
        try:
            review_meta(post)
        except ContentError as exc:
            errors.append(exc)
    return errors


def post_data(post: Post, *, url: str, image: str | None, author: str | None, language: str) -> dict[str, Any]:
    """The schema.org node of a post's page (see the module docstring), as plain data."""
    data: dict[str, Any] = {"@context": "https://schema.org", "@type": "BlogPosting"}
    data["headline"] = post.title
    if post.summary_text:
        data["description"] = post.summary_text
    data["datePublished"] = post.date.isoformat()
    data["dateModified"] = post.last_modified.isoformat()
    if author:
        data["author"] = {"@type": "Person", "name": author}
    if image:
        data["image"] = image
    data["url"] = url
    data["mainEntityOfPage"] = url
    data["inLanguage"] = language
    if post.tags:
        data["keywords"] = list(post.tags)
    review = review_meta(post)
    if review is not None:
        data["@type"] = ["BlogPosting", "Review"]
        rating = review.rating
        data["reviewRating"] = {"@type": "Rating", "ratingValue": rating.value, "bestRating": rating.best, "worstRating": rating.worst}
        if review.reviewed:
            data["itemReviewed"] = {"@type": review.reviewed_type, "name": review.reviewed}
    return data


def script_json(data: Mapping[str, Any]) -> str:
    """`data` as JSON safe inside `<script type="application/ld+json">`: see the module docstring."""
    return json.dumps(data, ensure_ascii=False, indent=2).translate(_SCRIPT_SAFE)
