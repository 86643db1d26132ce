"""Suppression and erasure on real SQLite files through the real command: `unsubscribe` keeps a
reader and cancels their unsent messages, `forget` (and its alias `remove`) erases them and keeps
only a keyed hash, which stops `add` and `import` from bringing them back; the web signup and
confirm go through the same store methods."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from review_press.cli import app
from review_press.config import load_config
from review_press.errors import DeliveryError
from review_press.importers import import_csv
from review_press.store import Forget, SecretMismatch, SQLiteStore, Store, db_path, now_iso
from review_press.store.model import KEY_CHECK, SECRET_DIFFERS, forget_key_check, forgotten_hash
from review_press.tokens import make_token
from review_press.web.confirm import BadToken, confirm_key
from review_press.web.forms import Signup
from review_press.web.service import Confirmed, Subscriptions
from sites import write_site

SECRET = "suppression-test-secret-0123456789abcdef0123"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
STAMP = now_iso(NOW)
runner = CliRunner()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    return write_site(tmp_path / "site", {}, 'title = "T"\nbase_url = "https://example.org/"\n')


def cli(site: Path, *args: str) -> Result:
    result = runner.invoke(app, ["subscribers", *args, "--site", str(site)])
    assert "Traceback" not in result.output, result.output
    return result


def open_store(site: Path) -> Store:
    return SQLiteStore.open(db_path(load_config(site)))


def statuses(site: Path) -> dict[str, str]:
    with open_store(site) as store:
        return {s.address: s.status for s in store.iter_subscribers()}


def add_ledger(store: Store, slug: str, rows: dict[int, str]) -> None:
    """Ledger rows in given states (as `publish` leaves them), to see what a change does to them."""
    with store.transaction() as conn:
        conn.execute("INSERT INTO campaigns (slug, started_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (slug, STAMP))
        for sid, status in rows.items():
            conn.execute(
                "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (slug, sid, status, STAMP, STAMP),
            )


def ledger(store: Store) -> dict[tuple[str, int], tuple[str, str | None]]:
    rows = store.conn.execute("SELECT slug, subscriber_id, status, last_error FROM deliveries ORDER BY slug, subscriber_id")
    return {(slug, sid): (status, err) for slug, sid, status, err in rows}


def forgotten_rows(site: Path) -> list[str]:
    with open_store(site) as store:
        return [h for (h,) in store.conn.execute("SELECT address_hash FROM forgotten ORDER BY address_hash")]


# --- unsubscribe ---------------------------------------------------------------------------------


def test_unsubscribe_keeps_the_reader_and_skips_only_their_unsent_messages(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "press.db") as store:
        ann, bob = store.add("ann@example.org"), store.add("bob@example.org")
        add_ledger(store, "p1", {ann.id: "pending", bob.id: "pending"})
        add_ledger(store, "p2", {ann.id: "deferred"})
        add_ledger(store, "p3", {ann.id: "sent"})
        add_ledger(store, "p4", {ann.id: "failed"})
        assert store.unsubscribe(ann.id, NOW) is True
        assert store.unsubscribe(ann.id, NOW) is False  # idempotent
        assert store.get(ann.id).status == "unsubscribed"  # type: ignore[union-attr]
        assert ledger(store) == {
            ("p1", ann.id): ("skipped", "unsubscribed"),
            ("p1", bob.id): ("pending", None),
            ("p2", ann.id): ("skipped", "unsubscribed"),
            ("p3", ann.id): ("sent", None),
            ("p4", ann.id): ("failed", None),
        }
        assert store.unsubscribe(999_999, NOW) is False


def test_unsubscribe_never_turns_a_bounced_reader_into_an_unsubscribed_one(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "press.db") as store:
        sub = store.add("b@example.org")
        store.set_status(sub.id, "bounced")
        assert store.unsubscribe(sub.id, NOW) is False
        assert store.get(sub.id).status == "bounced"  # type: ignore[union-attr]


def test_the_unsubscribe_command_takes_many_addresses_and_reports_the_unknown_ones(site: Path) -> None:
    with open_store(site) as store:
        act, pen = store.add("act@example.org"), store.add("pen@example.org", status="pending")
        store.set_status(store.add("gone@example.org").id, "complained")
        add_ledger(store, "p1", {act.id: "pending", pen.id: "deferred"})
    result = cli(site, "unsubscribe", "ACT@example.org", "nobody@example.org", "pen@example.org", "not an address", "gone@example.org")
    assert result.exit_code == 1
    assert "unsubscribed act@example.org\n" in result.stdout and "unsubscribed pen@example.org\n" in result.stdout
    assert "gone@example.org was already complained\n" in result.stdout
    assert "error: nobody@example.org is not on the list" in result.stderr
    assert "error: 'not an address': " in result.stderr
    assert statuses(site) == {"act@example.org": "unsubscribed", "pen@example.org": "unsubscribed", "gone@example.org": "complained"}
    with open_store(site) as store:
        assert set(ledger(store).values()) == {("skipped", "unsubscribed")}
    assert cli(site, "unsubscribe", "act@example.org").exit_code == 0


@pytest.mark.parametrize(
    "text",
    [
        "email\nleft@example.org\n",
        "email,status\nleft@example.org,active\n",
        "email,name,status,consent_source,consent_at,consent_ip,created_at,updated_at\nleft@example.org,L,active,cli,,,,\n",
        "id,email,name,subscribed_to_emails,created_at,deleted_at\n1,left@example.org,L,true,,\n",
        "email,active_subscription,expiry,email_disabled,created_at\nleft@example.org,true,,false,\n",
    ],
)
def test_no_import_brings_back_an_unsubscribed_reader(site: Path, text: str) -> None:
    assert cli(site, "add", "left@example.org").exit_code == 0
    assert cli(site, "unsubscribe", "left@example.org").exit_code == 0
    (site / "in.csv").write_text(text, "utf-8")
    result = cli(site, "import", str(site / "in.csv"))
    assert result.exit_code == 0, result.output
    assert "already on the list, unchanged: 1" in result.stdout
    assert statuses(site) == {"left@example.org": "unsubscribed"}


# --- forget ------------------------------------------------------------------------------------


def test_forget_erases_the_reader_and_their_ledger_and_keeps_only_a_keyed_hash(site: Path) -> None:
    with open_store(site) as store:
        sub = store.add("erase.me.please@example.org", "Erin Erased", ip="192.0.2.55")
        keep = store.add("keep@example.org")
        add_ledger(store, "p1", {sub.id: "sent", keep.id: "sent"})
    result = cli(site, "forget", "Erase.Me.Please@example.org")
    assert result.exit_code == 0, result.output
    assert "forgot Erase.Me.Please@example.org" in result.stdout
    key = hmac.new(SECRET.encode(), b"forgotten-address", hashlib.sha256).digest()
    assert forgotten_rows(site) == [hmac.new(key, b"erase.me.please@example.org", hashlib.sha256).hexdigest()]
    with open_store(site) as store:
        assert store.find("erase.me.please@example.org") is None
        assert ledger(store) == {("p1", keep.id): ("sent", None)}
    files = [p for p in (site / ".review-press").iterdir() if p.name.startswith("press.db")]
    for path in files:  # no copy of the address or name left in free pages or the WAL
        data = path.read_bytes()
        assert b"erase.me.please" not in data and b"Erin Erased" not in data and b"192.0.2.55" not in data, path.name


def test_forget_reports_unknown_addresses_and_goes_on_with_the_others(site: Path) -> None:
    for address in ("a@example.org", "b@example.org"):
        cli(site, "add", address)
    result = cli(site, "forget", "a@example.org", "ghost@example.org", "a@b", "b@example.org")
    assert result.exit_code == 1
    assert "error: ghost@example.org is not on the list" in result.stderr and "error: 'a@b': " in result.stderr
    assert "forgot a@example.org" in result.stdout and "forgot b@example.org" in result.stdout
    assert statuses(site) == {} and len(forgotten_rows(site)) == 2
    again = cli(site, "forget", "A@example.org")
    assert again.exit_code == 0 and "A@example.org was already forgotten" in again.stdout
    assert len(forgotten_rows(site)) == 2


def test_remove_is_an_alias_of_forget(site: Path) -> None:
    cli(site, "add", "r@example.org")
    result = cli(site, "remove", "r@example.org", "s@example.org")
    assert result.exit_code == 1 and "forgot r@example.org" in result.stdout and "s@example.org is not on the list" in result.stderr
    assert len(forgotten_rows(site)) == 1
    assert "Alias of forget" in runner.invoke(app, ["subscribers", "remove", "--help"]).stdout


def test_add_refuses_a_forgotten_address_until_forced_which_clears_its_hash(site: Path) -> None:
    cli(site, "add", "back@example.org")
    cli(site, "forget", "back@example.org")
    refused = cli(site, "add", "BACK@example.org", "--name", "Back")
    assert refused.exit_code == 1
    assert "BACK@example.org was erased at the reader's request" in refused.stderr and "--force" in refused.stderr
    assert statuses(site) == {}
    forced = cli(site, "add", "back@example.org", "--force")
    assert forced.exit_code == 0 and statuses(site) == {"back@example.org": "active"}
    assert forgotten_rows(site) == []


def test_an_import_refuses_forgotten_addresses_and_lists_them(site: Path) -> None:
    for address in ("one@example.org", "two@example.org"):
        cli(site, "add", address)
    cli(site, "forget", "one@example.org", "two@example.org")
    (site / "list.csv").write_text("email,status\nnew@example.org,active\nONE@example.org,active\ntwo@example.org,unsubscribed\n", "utf-8")
    result = cli(site, "import", str(site / "list.csv"))
    assert result.exit_code == 0, result.output
    assert "forgotten, not re-added: 2" in result.stdout and "new readers: 1, 1 active" in result.stdout
    assert "list.csv:3: ONE@example.org was erased at the reader's request: forgotten, not re-added" in result.stderr
    assert "list.csv:4: two@example.org" in result.stderr
    assert statuses(site) == {"new@example.org": "active"}
    assert len(forgotten_rows(site)) == 2


def test_a_store_without_the_secret_never_re_adds_a_forgotten_address(tmp_path: Path) -> None:
    secret = SECRET.encode()
    with SQLiteStore.open(tmp_path / "press.db") as store:
        store.add("f@example.org")
        assert store.forget("f@example.org", secret, NOW) is Forget.ERASED
        assert store.forgotten_at("F@example.org", secret) == STAMP
        assert store.forgotten_at("F@example.org", b"another secret of enough length 0123456789") is None
        with pytest.raises(DeliveryError, match="needs the site secret"):
            store.add("f@example.org")
        csv = tmp_path / "r.csv"
        csv.write_text("email\nf@example.org\n", "utf-8")
        with pytest.raises(DeliveryError, match="needs the site secret"):
            import_csv(store, csv)
        assert import_csv(store, csv, secret=secret).forgotten == 1
        assert sum(store.count().values()) == 0


def test_the_hash_depends_on_the_secret_and_the_normalized_address() -> None:
    a, b = b"a" * 40, b"b" * 40
    assert forgotten_hash(a, "x@example.org") != forgotten_hash(b, "x@example.org")
    assert forgotten_hash(a, "x@example.org") != hashlib.sha256(b"x@example.org").hexdigest()
    assert len(forgotten_hash(a, "x@example.org")) == 64


@pytest.mark.parametrize("command", ["forget", "unsubscribe", "remove"])
@pytest.mark.parametrize(
    "junk",
    ["", "   ", "a@b", "@example.org", "x" * 300 + "@example.org", "a@example.org\r\nBcc: b@example.org", "ann@@example.org", "🙂"],
)
def test_garbage_addresses_are_reported_one_by_one(site: Path, command: str, junk: str) -> None:
    cli(site, "add", "real@example.org")
    result = cli(site, command, junk, "real@example.org")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert statuses(site) == ({} if command != "unsubscribe" else {"real@example.org": "unsubscribed"})


# --- the web endpoints use the same store methods ------------------------------------------------


def service(store: Store) -> Subscriptions:
    secret = SECRET.encode()
    return Subscriptions(store, secret, confirm_key(secret), 7)


def test_a_forgotten_reader_may_sign_up_again_and_confirming_clears_the_hash(site: Path) -> None:
    cli(site, "add", "again@example.org")
    cli(site, "forget", "again@example.org")
    with open_store(site) as store:
        web = service(store)
        outgoing = web.subscribe(Signup("again@example.org", "Again", False), "192.0.2.9", NOW)
        assert outgoing is not None and store.find("again@example.org").status == "pending"  # type: ignore[union-attr]
        assert forgotten_rows(site) != []  # until they confirm, the erasure stands on record
        assert web.confirm(outgoing.token, "192.0.2.10", NOW) is Confirmed.NOW
        sub = store.find("again@example.org")
        assert sub is not None and (sub.status, sub.consent_ip, sub.consent_at) == ("active", "192.0.2.10", STAMP)
    assert forgotten_rows(site) == []


def test_web_unsubscribe_goes_through_the_store_and_skips_deferred_rows_too(site: Path) -> None:
    with open_store(site) as store:
        sub = store.add("web@example.org")
        add_ledger(store, "p1", {sub.id: "deferred"})
        add_ledger(store, "p2", {sub.id: "pending"})
        web = service(store)
        was = web.unsubscribe(make_token(SECRET.encode(), sub.id), NOW)
        assert was is not None and was.status == "active"
        assert store.get(sub.id).status == "unsubscribed"  # type: ignore[union-attr]
        assert set(ledger(store).values()) == {("skipped", "unsubscribed")}
        assert web.unsubscribe("forged-token", NOW) is None


def test_an_unsubscribed_readers_old_confirm_link_stays_dead(site: Path) -> None:
    with open_store(site) as store:
        web = service(store)
        outgoing = web.subscribe(Signup("late@example.org", "", False), "192.0.2.1", NOW)
        assert outgoing is not None
        sub = store.find("late@example.org")
        assert sub is not None and store.unsubscribe(sub.id, NOW)
        with pytest.raises(BadToken):
            web.confirm(outgoing.token, "192.0.2.1", NOW)
        assert store.get(sub.id).status == "unsubscribed"  # type: ignore[union-attr]


# --- the secret the hashes were made with --------------------------------------------------------

OTHER = "another-secret-entirely-0123456789abcdef0123"


def test_forget_keeps_a_check_value_of_its_key_and_no_address(site: Path) -> None:
    cli(site, "add", "a@example.org")
    cli(site, "add", "b@example.org")
    assert cli(site, "forget", "a@example.org").exit_code == 0
    with open_store(site) as store:
        rows = store.conn.execute("SELECT name, value FROM settings").fetchall()
    assert rows == [(KEY_CHECK, forget_key_check(SECRET.encode()))]
    assert forget_key_check(SECRET.encode()) != forget_key_check(OTHER.encode())
    assert forget_key_check(SECRET.encode()) not in forgotten_rows(site)


@pytest.mark.parametrize("how", ["another", "unset"])
def test_forgotten_readers_never_come_back_under_another_secret(site: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    cli(site, "add", "A@x.org")
    cli(site, "add", "stays@x.org")
    assert cli(site, "forget", "A@x.org").exit_code == 0
    (site / "subs.csv").write_text("email\na@x.org\nnew@x.org\n", "utf-8")
    if how == "another":
        monkeypatch.setenv("REVIEW_PRESS_SECRET", OTHER)
    else:
        monkeypatch.delenv("REVIEW_PRESS_SECRET")  # the CLI falls back to .review-press/secret, a new random key
    before = forgotten_rows(site)
    for args in (("import", str(site / "subs.csv")), ("add", "a@x.org"), ("add", "new@x.org"), ("forget", "stays@x.org")):
        result = cli(site, *args)
        assert result.exit_code == 1, args
        assert f"error: {SECRET_DIFFERS}" in result.stderr, args
    assert statuses(site) == {"stays@x.org": "active"} and forgotten_rows(site) == before  # nothing changed
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)  # as before: the import goes in, the forgotten reader stays out
    result = cli(site, "import", str(site / "subs.csv"))
    assert result.exit_code == 0 and "forgotten, not re-added: 1" in result.stdout
    assert statuses(site) == {"stays@x.org": "active", "new@x.org": "active"}


def test_a_web_signup_under_another_secret_never_re_adds_a_forgotten_reader(site: Path) -> None:
    cli(site, "add", "again@example.org")
    cli(site, "forget", "again@example.org")
    with open_store(site) as store:
        other = OTHER.encode()
        web = Subscriptions(store, other, confirm_key(other), 7)
        for address in ("again@example.org", "someone.new@example.org"):
            with pytest.raises(SecretMismatch):  # a server error, logged: never a silent re-add
                web.subscribe(Signup(address, "", False), "192.0.2.9", NOW)
        assert sum(store.count().values()) == 0
        assert service(store).subscribe(Signup("someone.new@example.org", "", False), "192.0.2.9", NOW) is not None


def test_the_check_value_follows_the_secret_once_no_hash_is_left(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "press.db") as store:
        store.add("f@example.org")
        store.forget("f@example.org", SECRET.encode())
        store.add("f@example.org", secret=SECRET.encode(), forgotten="clear")  # their new consent: no hash left
        store.forget("f@example.org", OTHER.encode())  # a new secret since, and nothing hashed under the old one
        assert store.conn.execute("SELECT value FROM settings").fetchall() == [(forget_key_check(OTHER.encode()),)]
        with pytest.raises(SecretMismatch):
            store.add("f@example.org", secret=SECRET.encode(), forgotten="clear")
