"""The public Python API, called directly (no CLI): build a small site, check it, publish to
the Maildir outbox, read the status; and `import review_press` imports nothing heavy."""

from __future__ import annotations

import mailbox
import subprocess
import sys
from pathlib import Path

import pytest

import review_press as rp
from email_sites import NEWSLETTER_TOML
from sites import post_text, write_site


def test_build_check_publish_and_status_through_the_api(tmp_path: Path) -> None:
    root = write_site(tmp_path / "site", {"2026-01-05-first.md": post_text("First", date="2026-01-05")}, NEWSLETTER_TOML)

    plan, first = rp.build(root)
    assert first.rendered > 0 and [p.slug for p in plan.site.posts] == ["first"] and (root / "out" / "index.html").is_file()
    _, again = rp.build(root, rp.BuildOptions())
    assert again.rendered == 0 and again.written == ()  # nothing changed: nothing rendered or written
    assert [p.slug for p in rp.check(root).site.posts] == ["first"]

    with rp.open_store(rp.load_config(root)) as store:
        store.add("ann@example.org", "Ann")
        store.add("bob@example.org", "Bob")
    assert [p.address for p in rp.dry_run(root)] == ["ann@example.org", "bob@example.org"]

    sent = rp.publish(root, rp.PublishOptions(environ={}))
    assert sent.posts[0].sent == 2 and sent.failed == 0
    box = mailbox.Maildir(root / "outbox", create=False)
    assert sorted(m["Delivered-To"] for m in box) == ["ann@example.org", "bob@example.org"]
    assert not rp.publish(root, rp.PublishOptions(environ={})).posts  # exactly once

    status = rp.publish_status(root)
    assert [(s.ledger.slug, s.ledger.sent) for s in status.sent] == [("first", 2)] and not status.unsent


def test_user_errors_are_press_errors(tmp_path: Path) -> None:
    with pytest.raises(rp.ConfigError):
        rp.build(tmp_path)
    assert issubclass(rp.ConfigError, rp.PressError)


def test_import_is_lazy_and_the_version_is_there() -> None:
    code = "import sys, review_press as rp; print(rp.__version__, 'review_press.build' in sys.modules, 'jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [rp.__version__, "False", "False"]


def test_the_verbs_stay_callable_after_their_module_is_imported() -> None:
    import review_press.build  # the import system sets the package attribute
    import review_press.publish  # noqa: F401

    assert callable(rp.build) and callable(rp.publish) and rp.build.BuildOptions is rp.BuildOptions
    assert "check" in dir(rp) and "publish_status" in rp.__all__
    with pytest.raises(AttributeError):
        rp.no_such_name  # noqa: B018
