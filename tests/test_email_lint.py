"""Email lint: every rule has a failing fixture; the sample post's email passes them all.

Rules are checked two ways: on the finished email (`lint_html`, a mutated copy of the sample
post's email) and on a post whose raw HTML or links break a rule, where the problem must name
the line in the post's file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from email_sites import body_line, edition_of, sample
from review_press.edition import lint, make_edition
from review_press.edition.lint import HTML_LIMIT, Problem, lint_html, to_errors


@pytest.fixture(scope="module")
def good() -> tuple[str, str, str, str]:
    """The sample post's email: (html, text, url, preheader), which passes every rule."""
    post, config, theme = sample()
    edition = make_edition(post, config, theme)
    return edition.html, edition.text, edition.url, edition.preheader


def check(html: str, text: str, url: str, preheader: str) -> list[Problem]:
    return lint_html(html, text, url=url, preheader=preheader)


def rules(problems: list[Problem]) -> set[int]:
    return {p.rule for p in problems}


def test_the_sample_email_passes_every_rule(good) -> None:
    assert check(*good) == []


def mutated(good, old: str, new: str, count: int = 1) -> list[Problem]:
    html, text, url, pre = good
    assert old in html, old
    return check(html.replace(old, new, count), text, url, pre)


# --- rule 1: size -------------------------------------------------------------------------


def test_rule_1_html_over_100_kb(good) -> None:
    problems = mutated(good, "</body>", '<p style="font-family:x;color:#000">' + "x" * 110_000 + "</p></body>")
    assert [p.rule for p in problems] == [1]
    assert "over 100 KB" in problems[0].message


def test_rule_1_style_over_16_kb(good) -> None:
    big = "@media (max-width: 10px) {" + " ".join(f".c{i} {{ color: red !important }}" for i in range(900)) + "}"
    problems = mutated(good, "</style>", big + "</style>")
    assert rules(problems) == {1}


def test_rule_1_a_huge_post_is_cut_at_a_paragraph_not_refused(tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, "\n\n".join(f"Paragraph {i} " + "words " * 60 for i in range(300)))
    assert lint(edition, post) == [] and edition.cut
    assert len(edition.html.encode()) <= HTML_LIMIT and "Continue reading on the web</a></p>" in edition.html
    assert "Paragraph 299" in edition.text  # the plain text is whole


# --- rule 2: nothing active -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "gone"),
    [
        ("<script>alert(1)</script>", ("<script", "alert(1)")),
        ('<p onclick="steal()">Click</p>', ("onclick", "steal()")),
        ('<a href="javascript:alert(1)">x</a>', ("javascript:", "alert(1)")),
        ('<form action="https://example.org/f"><input name="q"></form>', ("<form", "<input", "example.org/f")),
        ('<link rel="stylesheet" href="https://example.org/s.css">', ("s.css",)),
        ('<p style="background:url(x);@import url(y)">x</p>', ("@import", "url(x)")),
    ],
)
def test_rule_2_active_content_in_a_post_is_sanitised_away_not_an_error(tmp_path: Path, raw: str, gone: tuple[str, ...]) -> None:
    """The allowlist removes it before the lint sees it: the build goes on, the email is clean."""
    edition, post = edition_of(tmp_path, f"First paragraph.\n\nSecond paragraph.\n\n{raw}\n\nLast.")
    assert lint(edition, post) == []
    for needle in gone:
        assert needle not in edition.html and needle not in edition.text, needle
    assert "Last." in edition.html and "Last." in edition.text


def test_rule_2_in_the_finished_email(good) -> None:
    assert rules(mutated(good, "</body>", "<script>x()</script></body>")) == {2}
    assert rules(mutated(good, "<style>", '<link rel="stylesheet" href="https://x.example/a.css"><style>')) == {2}
    assert rules(mutated(good, "<style>", "<style>@import url(https://x.example/a.css);\n")) >= {2}
    assert rules(mutated(good, '<td class="masthead"', '<td onmouseover="x()" class="masthead"')) == {2}


# --- rule 3: absolute https URLs --------------------------------------------------------------


def test_rule_3_an_http_link_in_markdown_is_reported_at_its_line(tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, "Intro.\n\nA [plain http link](http://insecure.example/page) here.\n")
    problems = lint(edition, post)
    assert [(p.rule, p.line) for p in problems] == [(3, body_line(post, "insecure.example"))]
    assert "http://insecure.example/page" in problems[0].message


def test_rule_3_data_images_lose_their_url_to_the_sanitiser(tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, 'Intro.\n\n<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot" width="1">\n')
    assert lint(edition, post) == []
    assert "data:" not in edition.html and "data:" not in edition.text
    assert re.search(r'<img alt="dot" width="1"', edition.html)


def test_rule_3_data_urls_in_the_finished_email(good) -> None:
    problems = mutated(good, "</body>", '<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot" width="1"></body>')
    assert [p.key for p in problems] == ["data-image"]


def test_rule_3_in_the_finished_email(good) -> None:
    problems = mutated(
        good, "</body>", '<p style="font-family:x;color:#000"><a href="http://insecure.example/" style="color:#000">x</a></p></body>'
    )
    assert [p.rule for p in problems] == [3, 9]
    problems = mutated(good, "</body>", '<img src="/relative.png" alt="x" width="10"></body>')
    assert rules(problems) == {3}


# --- rule 4: images -----------------------------------------------------------------------------


def test_rule_4_an_image_without_alt_is_reported_at_its_line(tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, 'Intro.\n\n<p>Look:\n<img src="https://example.org/a.png"></p>\n')
    problems = lint(edition, post)
    assert [(p.rule, p.line) for p in problems] == [(4, body_line(post, "a.png"))]


def test_rule_4_an_image_without_a_numeric_width(good) -> None:
    img = '<img src="https://example.org/a.png" alt="A" width="100%">'
    problems = mutated(good, "</body>", img + "</body>")
    assert rules(problems) == {4}
    assert rules(mutated(good, "</body>", '<img src="https://example.org/a.png" width="10"></body>')) == {4}


def test_images_in_posts_get_a_numeric_width(tmp_path: Path) -> None:
    edition, post = edition_of(
        tmp_path, '![wide](https://example.org/w.png)\n\n<img src="https://example.org/s.png" alt="small" width="120" height="60">\n'
    )
    assert lint(edition, post) == []
    assert 'width="552"' in edition.html and 'width="120" height="60"' in edition.html


# --- rule 5: document basics ----------------------------------------------------------------------


def test_rule_5_lang_dir_charset_viewport(good) -> None:
    assert rules(mutated(good, ' dir="ltr"', "")) == {5}
    assert rules(mutated(good, '<meta charset="utf-8">', "")) == {5}
    assert rules(mutated(good, '<meta name="viewport" content="width=device-width, initial-scale=1">', "")) == {5}


def test_rule_5_layout_tables_need_role_presentation(good, tmp_path: Path) -> None:
    assert rules(mutated(good, '<table role="presentation" class="container"', '<table class="container"')) == {5}
    edition, post = edition_of(tmp_path, "Intro.\n\n<table><tr><td>layout</td></tr></table>\n")
    problems = lint(edition, post)
    assert [(p.rule, p.line) for p in problems] == [(5, body_line(post, "<table>"))]


# --- rule 6: <style> ---------------------------------------------------------------------------------


def test_rule_6_style_in_a_post_is_dropped_by_the_sanitiser(tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, "Intro.\n\n<style>p { color: red }</style>\n\nAfter.")
    assert lint(edition, post) == []
    assert "color: red" not in edition.html and "color: red" not in edition.text and "After." in edition.html


def test_rule_6_plain_rules_and_media_without_important(good) -> None:
    problems = mutated(good, "<style>", "<style>p { color: red }\n")
    assert rules(problems) == {6} and "should be inlined" in problems[0].message
    problems = mutated(good, "<style>", "<style>@media (max-width: 10px) { .x { color: red } }\n")
    assert rules(problems) == {6} and "!important" in problems[0].message
    assert rules(mutated(good, "</body>", "<style>a:hover { color: red !important }</style></body>")) == {6}


# --- rule 7: inlined fonts and colours, no modern layout --------------------------------------------------


def test_rule_7_a_post_s_own_inline_css_is_dropped_by_the_sanitiser(tmp_path: Path) -> None:
    raw = '<div style="display:flex;position:absolute;color:var(--x)">boxes</div>'
    edition, post = edition_of(tmp_path, f"Intro.\n\n{raw}\n")
    assert lint(edition, post) == []
    assert "display:flex" not in edition.html and "var(--x)" not in edition.html and "boxes" in edition.html


def test_rule_7_text_without_inlined_font_and_color(good) -> None:
    html, text, url, pre = good
    start = html.index('<td class="content" style=')
    end = html.index(">", start)
    problems = check(html[:start] + '<td class="content"' + html[end:], text, url, pre)  # every paragraph inherits from this cell
    assert rules(problems) == {7} and "gets no inlined font-family from itself or its <td>" in problems[0].message
    assert len(problems) == 1  # once for the cell, not once per paragraph
    # a paragraph inherits from its cell, but a table inside it inherits nothing (Outlook), nor a heading (Outlook restyles them)
    assert rules(mutated(good, "</body>", f'<a href="{url}">bare link</a></body>')) == {7}
    nested = '<table class="data"><tr><th style="color:#000">Show</th></tr></table>'
    problems = mutated(good, '<p class="byline"', nested + '<p class="byline"')
    assert rules(problems) == {7} and "font-family from itself or its <th>" in problems[0].message
    start = html.index('<h2 id="')
    end = html.index(">", start)
    problems = check(html[:start] + re.sub(r"\sstyle=('[^']*'|\"[^\"]*\")", "", html[start : end + 1]) + html[end + 1 :], text, url, pre)
    assert rules(problems) == {7} and "<h2> without its own inlined font-family and color" in problems[0].message
    assert mutated(good, '<p class="byline" style="', '<p class="byline" style="font-family:Georgia;color:#000;') == []
    assert rules(mutated(good, "<style>", "<style>@media (max-width: 9px) { .x { display: grid !important } }\n")) == {7}


# --- rule 8: MSO conditionals and the preheader ---------------------------------------------------------------


def test_rule_8_unbalanced_conditionals(good) -> None:
    assert rules(mutated(good, "<![endif]-->", "-->", 1)) == {8}
    assert rules(mutated(good, "<!--[if mso]></td></tr></table><![endif]-->", "<!--[if mso]></td></tr><![endif]-->")) == {8}


def test_rule_8_preheader_first_in_body(good) -> None:
    html, text, url, pre = good
    start = html.index('<div class="preheader"')
    end = html.index("</div>", start) + len("</div>")
    moved = html[:start] + html[end:].replace("</body>", html[start:end] + "</body>")
    assert rules(check(moved, text, url, pre)) == {8}
    assert rules(check(html, text, url, "Some other preheader text entirely, forty chars")) == {8}


# --- rule 9: the plain text ------------------------------------------------------------------------------------


def test_rule_9_plain_text_empty_or_missing_a_link(good) -> None:
    html, text, url, pre = good
    assert rules(check(html, "  \n", url, pre)) == {9}
    problems = check(html, text.replace("https://reviews.example.org/posts/run-away-season-1-review/", "(gone)"), url, pre)
    assert rules(problems) == {9}
    problems = mutated(
        good,
        '</td>\n</tr>\n<tr>\n<td class="button-cell"',
        ' <a href="https://elsewhere.example/x" style="color:#000">x</a></td>\n</tr>\n<tr>\n<td class="button-cell"',
    )
    assert [p.message for p in problems] == ["the plain text lacks the link https://elsewhere.example/x"]


def test_problems_found_in_the_post_are_reported_once(tmp_path: Path) -> None:
    body = 'Intro.\n\n<img src="http://insecure.example/one.png" alt="one">\n\n<img src="http://insecure.example/two.png" alt="two">\n'
    edition, post = edition_of(tmp_path, body)
    problems = lint(edition, post)
    assert [(p.rule, p.line) for p in problems] == [(3, body_line(post, "one.png")), (3, body_line(post, "two.png"))]
    error = to_errors(problems, post)[0]
    assert error.path == post.source and error.line == problems[0].line and "email rule 3" in str(error)
