"""review-press: Markdown posts to a static site, feeds, and an email newsletter."""

__version__ = "0.1.0"
