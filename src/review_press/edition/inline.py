"""premailer, set for email (see the module docstring of `edition`) and memoised by stylesheet.

Its own module, imported only when an email is rendered: premailer brings cssutils and requests,
a tenth of a second of start-up that a build with no email to make does not pay.
"""

from __future__ import annotations

import logging
import os

# premailer memoises parsed CSS, selectors and declarations in one shared LFU cache of 128
# entries by default; one email stylesheet (with the code highlighting) holds more than that,
# and a cache that small thrashes on every post. The variable is read when premailer is imported.
os.environ.setdefault("PREMAILER_CACHE_MAXSIZE", "4096")

import cssutils
from premailer import Premailer

cssutils.log.setLevel(logging.CRITICAL)


class _Leftover(list):  # type: ignore[type-arg]
    """The rules premailer leaves in <style>, with their finished text (computed once per stylesheet)."""

    text: str = ""


class _EmailPremailer(Premailer):  # type: ignore[misc]
    """premailer whose stylesheet parsing is memoised by CSS text: every post shares one stylesheet."""

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
        return _parsed_rules(self, css_body, ruleset_index)

    def _css_rules_to_string(self, rules: list) -> str:
        return rules.text if isinstance(rules, _Leftover) else super()._css_rules_to_string(rules)


_RULES: dict[tuple[str, int], tuple[list, _Leftover]] = {}


def _parsed_rules(premailer: _EmailPremailer, css_body: str, ruleset_index: int) -> tuple[list, list]:
    """premailer's (inline rules, leftover rules) for one stylesheet, computed once per text."""
    key = (css_body, ruleset_index)
    if key not in _RULES:
        if len(_RULES) > 32:
            _RULES.clear()
        rules, leftover = Premailer._parse_style_rules(premailer, css_body, ruleset_index)
        kept = _Leftover(leftover)
        kept.text = Premailer._css_rules_to_string(premailer, leftover) if leftover else ""
        _RULES[key] = (rules, kept)
    rules, kept = _RULES[key]
    return list(rules), kept


def email_premailer() -> Premailer:
    """premailer set for email, not for its defaults; see the module docstring of `edition`."""
    return _EmailPremailer(
        strip_important=False,  # keep !important in @media, or every mobile and dark override is dead
        keep_style_tags=False,  # plain rules go inline; only @media and :pseudo rules stay in <head>
        exclude_pseudoclasses=True,
        disable_basic_attributes=["width", "height"],  # never width="100%" on images; the template sets widths
        disable_link_rewrites=True,  # URLs are made absolute by `_prepare`, which knows about slots and fragments
        allow_network=False,  # never fetch a stylesheet a post links to; the lint reports it instead
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        align_floating_images=False,
        remove_classes=False,  # @media rules select by class
    )
