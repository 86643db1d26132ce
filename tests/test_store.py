"""The subscriber store on real SQLite files: addresses, CSV import (and its garbage), listing,
export, removal, schema migrations, and the unsubscribe tokens."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from review_press.errors import DeliveryError
from review_press.importers import import_csv
from review_press.store import MIGRATIONS, Forget, SQLiteStore, Store, parse_address
from review_press.tokens import SECRET_ENV, load_secret, make_token, verify_token


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with SQLiteStore.open(tmp_path / "state" / "press.db") as s:
        yield s


def write_csv(tmp_path: Path, text: str | bytes, name: str = "readers.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    return path


# --- addresses ---------------------------------------------------------------------------


def test_addresses_are_normalized_with_idn_and_unicode_local_parts() -> None:
    idn = parse_address("  Ann@Bücher.DE ")
    assert idn.address == "Ann@bücher.de"
    assert idn.envelope == "Ann@xn--bcher-kva.de"
    assert not idn.needs_smtputf8
    assert parse_address("ann@xn--bcher-kva.de").key == idn.key == "ann@xn--bcher-kva.de"
    uni = parse_address("josé@example.org")
    assert uni.address == "josé@example.org" and uni.needs_smtputf8


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "two@@example.org", "a@example.org\r\nBcc: x@y.org", "a b@example.org"])
def test_bad_addresses_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_address(bad)


def test_add_refuses_duplicates_whatever_their_case_and_header_injection(store: Store) -> None:
    ann = store.add("Ann@Example.org", "Ann")
    assert (ann.address, ann.name, ann.status, ann.consent_source) == ("Ann@example.org", "Ann", "active", "cli")
    with pytest.raises(DeliveryError, match="already on the list"):
        store.add("ANN@example.ORG")
    with pytest.raises(DeliveryError, match="line break"):
        store.add("bob@example.org", "Bob\r\nBcc: evil@example.org")
    with pytest.raises(DeliveryError, match="not-an-address"):
        store.add("not-an-address")
    assert store.count()["active"] == 1


def test_add_records_consent(store: Store) -> None:
    sub = store.add("c@example.org", status="pending", source="web form", ip="192.0.2.7")
    assert (sub.status, sub.consent_source, sub.consent_ip) == ("pending", "web form", "192.0.2.7")
    assert sub.consent_at and sub.created_at.endswith("Z")


# --- CSV import ----------------------------------------------------------------------------


def test_import_reports_bad_rows_by_line_and_skips_duplicates(store: Store, tmp_path: Path) -> None:
    store.add("old@example.org")
    path = write_csv(
        tmp_path,
        "Name,Email,created_at\n"  # header names in any case and order; other columns ignored
        "Ann,ann@example.org,2020-01-01\n"
        "Bob,not-an-address,x\n"
        "\n"
        "Cat,ANN@EXAMPLE.ORG,x\n"  # duplicate within the file, other case
        "Old,Old@Example.org,x\n"  # duplicate of a stored address
        "Dan,,x\n"
        'Eve,"eve@example.org",\n'
        "Fay\n"  # too few columns
        "Gus,gus@bücher.de,\n",
    )
    report = import_csv(store, path)
    assert report.added == 3
    assert report.duplicates == 2
    assert [p.line for p in report.problems] == [3, 7, 9]
    assert "not-an-address" in str(report.problems[0]) and "line 3" in str(report.problems[0])
    assert "no address" in report.problems[1].reason
    assert "too few columns" in report.problems[2].reason
    assert [s.address for s in store.iter_subscribers()] == ["old@example.org", "ann@example.org", "eve@example.org", "gus@bücher.de"]
    assert store.find("ann@example.org").consent_source == "import:readers.csv"  # type: ignore[union-attr]


def test_import_never_reactivates_unsubscribed_or_bounced(store: Store, tmp_path: Path) -> None:
    gone = store.add("gone@example.org")
    bounced = store.add("bounced@example.org")
    store.set_status(gone.id, "unsubscribed")
    store.set_status(bounced.id, "bounced")
    report = import_csv(store, write_csv(tmp_path, "email\nGone@example.org\nbounced@EXAMPLE.org\nnew@example.org\n"))
    assert (report.added, report.duplicates) == (1, 2)
    assert store.find("gone@example.org").status == "unsubscribed"  # type: ignore[union-attr]
    assert store.find("bounced@example.org").status == "bounced"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        (b"", "empty", 1),
        (b"   \n\n", "empty", 1),
        (b"name,address\nAnn,ann@example.org\n", "no 'email' column", 1),
        (b"email,name\na@example.org,A\nb@example.org,B\nc@example.org,Caf\xe9\n", "not UTF-8", 4),
    ],
)
def test_unreadable_files_change_nothing(store: Store, tmp_path: Path, content: bytes, message: str, line: int) -> None:
    with pytest.raises(DeliveryError, match=message) as info:
        import_csv(store, write_csv(tmp_path, content))
    assert info.value.line == line
    assert sum(store.count().values()) == 0


def test_strict_import_aborts_in_one_transaction(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "email\na@example.org\nb@example.org\nbroken\nc@example.org\n")
    with pytest.raises(DeliveryError, match="bad row") as info:
        import_csv(store, path, strict=True)
    assert info.value.line == 4
    assert sum(store.count().values()) == 0


def test_import_of_a_header_only_file_and_a_bom(store: Store, tmp_path: Path) -> None:
    assert import_csv(store, write_csv(tmp_path, "email,name\n")).added == 0
    report = import_csv(store, write_csv(tmp_path, "\ufeffemail\r\nbom@example.org\r\n".encode(), "bom.csv"))
    assert (report.added, report.problems) == (1, ())


# --- list, count, forget, export -----------------------------------------------------------------

SECRET = b"store-test-secret-0123456789abcdef0123456789"


def test_list_count_forget_export_round_trip(store: Store, tmp_path: Path) -> None:
    for i in range(25):
        store.add(f"r{i}@example.org", f"Reader {i}")
    store.set_status(store.find("r3@example.org").id, "unsubscribed")  # type: ignore[union-attr]
    assert len(list(store.iter_subscribers(batch=7))) == 25  # streamed in batches, none lost
    assert len(list(store.iter_subscribers(["active"], batch=4))) == 24
    assert store.count() == {"pending": 0, "active": 24, "unsubscribed": 1, "bounced": 0, "complained": 0}
    assert store.forget("R5@example.org", SECRET) is Forget.ERASED
    assert store.forget("r5@example.org", SECRET) is Forget.ALREADY
    out = io.StringIO()
    assert store.export_csv(out) == 24
    exported = write_csv(tmp_path, out.getvalue(), "export.csv")
    with SQLiteStore.open(tmp_path / "other.db") as other:
        assert import_csv(other, exported).added == 24
        assert [s.name for s in other.iter_subscribers()][:2] == ["Reader 0", "Reader 1"]


def test_ids_are_never_reused_so_old_tokens_fit_no_new_reader(store: Store) -> None:
    store.add("a@example.org")
    gone = store.add("b@example.org")
    store.forget("b@example.org", SECRET)
    assert store.add("c@example.org", secret=SECRET).id > gone.id


def test_store_remove_is_gone_forget_is_the_one_erasure() -> None:
    assert not hasattr(Store, "remove")  # it deleted a reader without keeping them from coming back


def test_forget_deletes_ledger_rows_too(store: Store) -> None:
    sub = store.add("x@example.org")
    with store.transaction() as conn:
        conn.execute("INSERT INTO campaigns (slug, started_at) VALUES ('p', '2026-01-01T00:00:00.000000Z')")
        conn.execute(
            "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) VALUES ('p', ?, 'sent', '', '')", (sub.id,)
        )
    store.forget("x@example.org", SECRET)
    assert store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0


# --- schema ----------------------------------------------------------------------------------


def test_schema_is_versioned_wal_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "press.db"
    with SQLiteStore.open(path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        s.add("keep@example.org")
    with SQLiteStore.open(path) as s:  # reopening migrates nothing and keeps the data
        assert s.find("keep@example.org") is not None


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "press.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(DeliveryError, match="newer than this review-press"):
        SQLiteStore.open(path)


# --- tokens ----------------------------------------------------------------------------------


def test_tokens_round_trip_and_resist_forgery() -> None:
    secret = b"k" * 32
    token = make_token(secret, 42)
    assert verify_token(secret, token) == 42
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token
    assert "42" not in token
    assert verify_token(b"other" * 8, token) is None
    forged = make_token(b"attacker" * 4, 43)
    assert verify_token(secret, forged) is None
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert verify_token(secret, flipped) is None
    for junk in ["", "x", "!!!!", token + "AAAA", "é" * 32, "A" * 500]:
        assert verify_token(secret, junk) is None
    assert len({make_token(secret, i) for i in range(1000)}) == 1000


def test_tokens_and_message_ids_are_the_one_shot_hmacs_they_always_were() -> None:
    """The keyed states copied per message (`keyed_digest`) give the bytes of `hmac.digest`, for
    keys shorter and longer than SHA-256's block and messages of any length, so every token and
    Message-ID already mailed still matches."""
    import base64
    import hmac

    from review_press.newsletter import campaign_message_id
    from review_press.tokens import keyed_digest, purpose_key

    for key in (b"", b"k", b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(256)) * 2):
        for message in (b"", b"x", b"id-mask:\x00abcd", bytes(range(256)) * 20):
            assert keyed_digest(key, message) == hmac.digest(key, message, "sha256")

    def one_shot_token(secret: bytes, sid: int) -> str:  # tokens as first written, round by round
        packed = sid.to_bytes(8, "big")
        left, right = packed[:4], packed[4:]
        for r in range(4):
            mask = hmac.digest(secret, b"id-mask:" + bytes([r]) + right, "sha256")[:4]
            left, right = right, (int.from_bytes(left, "big") ^ int.from_bytes(mask, "big")).to_bytes(4, "big")
        mac = hmac.digest(secret, b"unsubscribe:" + packed, "sha256")[:16]
        return base64.urlsafe_b64encode(left + right + mac).rstrip(b"=").decode("ascii")

    for secret in (b"k" * 32, b"s" * 64, b"\xff" * 100):
        for sid in (1, 2, 255, 65_536, 2**40 + 7):
            assert make_token(secret, sid) == one_shot_token(secret, sid)
            derived = purpose_key(secret, b"campaign message-id")
            mac = hmac.digest(derived, f"first-post\0{sid}\0example.org".encode(), "sha256").hex()[:12]
            assert campaign_message_id("first-post", sid, "example.org", secret) == f"<first-post.{sid}.{mac}@example.org>"


def test_secret_file_is_private_reused_and_overridden_by_the_environment(tmp_path: Path) -> None:
    state = tmp_path / ".review-press"
    first = load_secret(state, environ={})
    assert load_secret(state, environ={}) == first
    mode = stat.S_IMODE(os.stat(state / "secret").st_mode)
    assert mode == 0o600
    from_env = "from-env-0123456789abcdef0123456789abcdef"  # 32 characters at least: a shorter one is refused
    assert load_secret(state, environ={SECRET_ENV: from_env}) == from_env.encode()


def test_a_token_does_not_show_its_subscriber_id() -> None:
    import base64

    secret = b"k" * 40
    heads = []
    for sid in (1, 2, 3, 1000):
        token = make_token(secret, sid)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert raw[:8] != sid.to_bytes(8, "big")  # not the id in clear
        assert verify_token(secret, token) == sid
        heads.append(raw[:8])
    # neighbouring ids give unrelated masked ids: most bytes differ
    assert sum(a != b for a, b in zip(heads[0], heads[1], strict=True)) >= 5
    assert verify_token(b"other" * 8, make_token(secret, 1)) is None
