"""Issue 15, topics from other services: Mailchimp's TAGS, Ghost's labels, listmonk's attributes
and our own export's topics and frequency become the site's `[newsletter] topics` for new
readers (a reader already on the list keeps their choice), on real stores (SQLite, and
PostgreSQL where it is installed); and the `subscribers add/list/import` commands with topics."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from review_press.cli import app
from review_press.config import load_config
from review_press.importers import ImportOptions, import_file
from review_press.store import EXPORT_COLUMNS, ImportReport, SQLiteStore, Store, open_store
from review_press.store.mailings import WELCOME
from sites import write_site

SECRET = b"import-test-secret-0123456789abcdef0123456789"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TOPICS = ("Book Club", "Film", "TV Series")
runner = CliRunner()

MAILCHIMP = '''\
Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LEID,EUID,NOTES,TAGS
gus@example.org,Gus,Grey,2,"2019-05-01 08:00:00",198.51.100.7,,,11,a1b2,,"""Book club"",""VIP"""
hil@example.org,Hil,,3,"2020-02-02 10:00:00",,,,12,a1b3,,"""film"",""tv series"",""Film"""
ivo@example.org,,,1,,,,,13,a1b4,,
jo@example.org,,,1,,,,,14,a1b5,,"Film, Newsletter 2023"
'''
GHOST = """\
id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,deleted_at,labels,tiers
1,lea@example.org,Lea Long,,true,false,,2022-02-03T04:05:06.000Z,,"Friends, Book club",Free
2,max@example.org,Max,,true,false,,2022-03-03T04:05:06.000Z,,,Free
3,ned@example.org,Ned,,true,false,,2022-03-03T04:05:06.000Z,,"  TV   Series ,film ",Free
"""
LISTMONK = """\
email,name,attributes
oli@example.org,Oli,"{""city"": ""Bengaluru"", ""topics"": [""film"", ""Cooking"", 3]}"
pam@example.org,Pam,"{""topics"": ""Book Club, tv series""}"
quin@example.org,Quin,{not json
rae@example.org,Rae,"[""film""]"
sol@example.org,Sol,"{""topics"": {""deep"": ""film""}}"
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with SQLiteStore.open(tmp_path / "state" / "press.db") as s:
        yield s


def load(store: Store, tmp_path: Path, text: str, name: str = "readers.csv", **options: object) -> ImportReport:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    opts = ImportOptions(topics=TOPICS, **options)  # type: ignore[arg-type]
    return import_file(store, path, opts, secret=SECRET, now=NOW)


def chosen(store: Store) -> dict[str, tuple[tuple[str, ...], str]]:
    """address -> (sorted topics, frequency), for every stored reader."""
    return {s.address: (tuple(sorted(s.topics)), s.frequency) for s in store.iter_subscribers()}


def test_mailchimp_tags_become_topics_in_the_sites_spelling(any_store: Store, tmp_path: Path) -> None:
    report = load(any_store, tmp_path, MAILCHIMP)
    assert (report.added, report.bad_rows) == (4, 0)
    assert chosen(any_store) == {
        "gus@example.org": (("Book Club",), "each"),
        "hil@example.org": (("Film", "TV Series"), "each"),
        "ivo@example.org": ((), "each"),
        "jo@example.org": (("Film",), "each"),
    }
    assert report.ignored_labels == ("VIP", "Newsletter 2023")


def test_ghost_labels_become_topics(any_store: Store, tmp_path: Path) -> None:
    report = load(any_store, tmp_path, GHOST)
    assert chosen(any_store) == {
        "lea@example.org": (("Book Club",), "each"),
        "max@example.org": ((), "each"),
        "ned@example.org": (("Film", "TV Series"), "each"),
    }
    assert report.ignored_labels == ("Friends",)


def test_listmonk_attributes_topics_become_topics_and_other_attributes_are_left_alone(store: Store, tmp_path: Path) -> None:
    report = load(store, tmp_path, LISTMONK)
    assert (report.added, report.bad_rows) == (5, 0)  # a broken attributes cell is not ours to refuse
    assert chosen(store) == {
        "oli@example.org": (("Film",), "each"),
        "pam@example.org": (("Book Club", "TV Series"), "each"),
        "quin@example.org": ((), "each"),
        "rae@example.org": ((), "each"),
        "sol@example.org": ((), "each"),
    }
    assert report.ignored_labels == ("Cooking",)
    attribs = 'email,name,attribs\ntia@example.org,Tia,"{""Topics"": [""Film""]}"\n'
    assert load(store, tmp_path, attribs, "attribs.csv").format == "listmonk CSV"
    assert chosen(store)["tia@example.org"] == (("Film",), "each")


def test_a_reader_already_on_the_list_keeps_their_choice(any_store: Store, tmp_path: Path) -> None:
    any_store.add("gus@example.org", topics=["TV Series"], frequency="weekly")
    any_store.add("ivo@example.org")
    report = load(any_store, tmp_path, MAILCHIMP)
    assert (report.added, report.already) == (2, 2)
    picked = chosen(any_store)
    assert picked["gus@example.org"] == (("TV Series",), "weekly")
    assert picked["ivo@example.org"] == ((), "each")
    assert picked["hil@example.org"] == (("Film", "TV Series"), "each")


def test_a_new_reader_twice_in_a_file_gets_the_topics_of_the_first_row(store: Store, tmp_path: Path) -> None:
    text = 'email,name,attributes\nann@example.org,A,"{""topics"": [""Film""]}"\nANN@example.org,A,"{""topics"": [""Book Club""]}"\n'
    report = load(store, tmp_path, text)
    assert (report.added, report.already) == (1, 1)
    assert chosen(store) == {"ann@example.org": (("Film",), "each")}


def test_without_topics_configured_every_label_is_ignored(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(MAILCHIMP, "utf-8")
    report = import_file(store, path, ImportOptions(), secret=SECRET, now=NOW)
    assert report.added == 4 and set(chosen(store).values()) == {((), "each")}
    assert set(report.ignored_labels) == {"Book club", "VIP", "film", "tv series", "Film", "Newsletter 2023"}


def test_garbage_labels_never_become_topics_or_break_the_import(store: Store, tmp_path: Path) -> None:
    huge = ",".join(f"label {i}" for i in range(5000))
    rows = [
        f'a@example.org,,,,,,,,1,a,,"{huge}"',
        'b@example.org,,,,,,,,2,b,,"""Film"",""Film\x00"",""=cmd|\' /C calc\'!A0"""',
        'c@example.org,,,,,,,,3,c,,",,, ,Film,"',
        'd@example.org,,,,,,,,4,d,,"""unclosed, Film"',
    ]
    text = MAILCHIMP.splitlines()[0] + "\n" + "\n".join(rows) + "\n"
    report = load(store, tmp_path, text)
    assert (report.added, report.bad_rows) == (4, 0)
    picked = chosen(store)
    assert picked["a@example.org"] == ((), "each")
    assert picked["b@example.org"] == (("Film",), "each")
    assert picked["c@example.org"] == (("Film",), "each")
    assert set(t for topics, _ in picked.values() for t in topics) <= set(TOPICS)
    assert len(report.ignored_labels) <= 1000 and all(len(label) <= 60 for label in report.ignored_labels)


# --- our own export -----------------------------------------------------------------------------


def test_our_export_carries_topics_and_frequency_and_reads_them_back(any_store: Store, tmp_path: Path) -> None:
    before = NOW - dt.timedelta(days=3)
    any_store.add("ann@example.org", "Ann", topics=["Film", "TV Series"], frequency="weekly", now=before)
    any_store.add("bo@example.org", "Bo", now=before)
    any_store.add("cy@example.org", "Cy", status="pending", topics=["Book Club"], now=before)
    out = io.StringIO()
    assert any_store.export_csv(out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == EXPORT_COLUMNS and EXPORT_COLUMNS[-2:] == ("topics", "frequency")
    assert {r["email"]: (r["topics"], r["frequency"]) for r in rows} == {
        "ann@example.org": ("Film;TV Series", "weekly"),
        "bo@example.org": ("", "each"),
        "cy@example.org": ("Book Club", "each"),
    }
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), "utf-8")
    with SQLiteStore.open(tmp_path / "fresh.db") as fresh:
        report = import_file(fresh, path, ImportOptions(topics=("film", "tv series", "book club")), secret=SECRET, now=NOW)
        assert (report.format, report.added, report.bad_rows) == ("review-press export", 3, 0)
        assert chosen(fresh) == {
            "ann@example.org": (("film", "tv series"), "weekly"),  # the importing site's spelling
            "bo@example.org": ((), "each"),
            "cy@example.org": (("book club",), "each"),
        }


def test_our_export_with_a_bad_frequency_is_a_bad_row(store: Store, tmp_path: Path) -> None:
    header = ",".join(EXPORT_COLUMNS) + "\n"
    good = "ok@example.org,,active,cli,2026-01-01T00:00:00.000000Z,,,,,,Film,WEEKLY\n"
    bad = "no@example.org,,active,cli,2026-01-01T00:00:00.000000Z,,,,,,Film,daily\n"
    old = "email,name,status,consent_source,consent_at\nold@example.org,,active,cli,2026-01-01T00:00:00.000000Z\n"
    report = load(store, tmp_path, header + good + bad)
    assert (report.added, report.bad_rows) == (1, 1) and "unknown frequency 'daily'" in report.problems[0].reason
    assert chosen(store) == {"ok@example.org": (("Film",), "weekly")}
    assert load(store, tmp_path, old, "old.csv").added == 1  # an export from before topics: every post
    assert chosen(store)["old@example.org"] == ((), "each")


# --- the commands -------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET.decode())
    toml = 'title = "T"\nbase_url = "https://example.org/"\n[newsletter]\ntopics = ["Book Club", "Film", "TV Series"]\n'
    return write_site(tmp_path / "site", {}, toml)


def _cli(site: Path, *args: str) -> object:
    return runner.invoke(app, [*args, "--site", str(site)])


def test_add_with_topics_weekly_and_welcome_and_list_shows_them(site: Path) -> None:
    done = _cli(site, "subscribers", "add", "ann@example.org", "--topic", "film", "--topic", "TV SERIES", "--weekly", "--welcome")
    assert done.exit_code == 0, done.output  # type: ignore[attr-defined]
    assert "added ann@example.org (topics: Film, TV Series) (weekly digest); the welcome email is queued" in done.stdout  # type: ignore[attr-defined]
    assert _cli(site, "subscribers", "add", "bo@example.org").exit_code == 0  # type: ignore[attr-defined]
    listed = _cli(site, "subscribers", "list").stdout.splitlines()  # type: ignore[attr-defined]
    cells = {line.split("\t")[0]: line.split("\t")[5:] for line in listed}
    assert cells == {"ann@example.org": ["weekly", "Film, TV Series"], "bo@example.org": ["each", ""]}
    with open_store(load_config(site)) as store:
        welcomed = [sid for (sid,) in store.conn.execute("SELECT subscriber_id FROM deliveries WHERE slug = ?", (WELCOME,))]
        assert welcomed == [store.find("ann@example.org").id]  # type: ignore[union-attr]  # bo was added without --welcome


@pytest.mark.parametrize("topic", ["Poetry", "", "Film\nBcc: x", "F" * 500])
def test_add_refuses_an_unknown_topic_naming_it_without_a_traceback(site: Path, topic: str) -> None:
    result = _cli(site, "subscribers", "add", "ann@example.org", "--topic", "Film", "--topic", topic)
    assert result.exit_code == 1 and "Traceback" not in result.output  # type: ignore[attr-defined]
    assert f"unknown topic {topic!r}" in result.stderr and "Book Club, Film, TV Series" in result.stderr  # type: ignore[attr-defined]
    assert _cli(site, "subscribers", "count").stdout.endswith("total 0\n")  # type: ignore[attr-defined]


def test_add_with_a_topic_on_a_site_without_topics_says_there_are_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET.decode())
    plain = write_site(tmp_path / "plain", {}, 'title = "T"\nbase_url = "https://example.org/"\n')
    result = _cli(plain, "subscribers", "add", "ann@example.org", "--topic", "Film")
    assert result.exit_code == 1 and "lists no topics" in result.stderr  # type: ignore[attr-defined]


def test_import_reports_the_labels_it_ignored(site: Path) -> None:
    (site / "m.csv").write_text(MAILCHIMP, "utf-8")
    result = _cli(site, "subscribers", "import", str(site / "m.csv"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "labels that are not topics of this site, ignored: 'VIP', 'Newsletter 2023'\n" in result.stdout  # type: ignore[attr-defined]
    with open_store(load_config(site)) as store:
        assert store.find("hil@example.org").topics == ("Film", "TV Series")  # type: ignore[union-attr]
