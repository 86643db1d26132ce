"""Spreadsheet formula injection: `subscribers export` never writes a cell a spreadsheet would run.

Names come from the public subscribe form, so one may be `=cmd|' /C calc'!A0`. The export
prefixes every cell that starts with `= + - @`, a tab or a carriage return (and every cell that
starts with `'`, so the prefix is never ambiguous) with `'`; importing our own export takes it
off, and the round trip stays lossless, addresses included (`=`, `+`, `-` and `'` may all
start a local part). Everything runs on real SQLite files, through the real CLI where it
matters, and the hostile name comes in through the real subscribe form.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from review_press.cli import app as cli
from review_press.config import load_config
from review_press.importers import import_file
from review_press.spreadsheet import FORMULA_STARTS, neutralize_cell, restore_cell
from review_press.store import EXPORT_COLUMNS, SQLiteStore, Store, db_path
from review_press.web import create_app
from sites import write_site

SECRET = "csv-test-secret-0123456789abcdef0123456789abcdef"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CALC = "=cmd|' /C calc'!A0"
SITE_TOML = """\
title = "Test Site"
base_url = "https://example.org/"
timezone = "UTC"

[newsletter]
since = 2026-01-01
from = "Test Site <letters@example.org>"

[web]
url = "https://example.org/newsletter/"
"""
# (address, name): every start that a spreadsheet runs, and every start that could make the escape ambiguous
HOSTILE = [
    ("calc@example.org", CALC),
    ("plus@example.org", "+1+2"),
    ("minus@example.org", "-2+3"),
    ("at@example.org", "@SUM(1+1)*cmd|' /C calc'!A0"),
    ("quote@example.org", "'"),
    ("quotes@example.org", "''"),
    ("quote-eq@example.org", "'=1+1"),
    ("quote-text@example.org", "'quoted'"),
    ("=eq@example.org", "="),
    ("-dash@example.org", "-"),
    ("+plus@example.org", "+"),
    ("'apostrophe@example.org", "O'Brien"),
    ("''two@example.org", "Two Quotes"),
    ("'=x@example.org", "@"),
    ("plain@example.org", "Ann Plain"),
]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def dangerous(cell: str) -> bool:
    """Would a spreadsheet read this cell as a formula?"""
    return cell[:1] in FORMULA_STARTS


def people(store: Store) -> list[tuple[str, str, str, str]]:
    return sorted((s.address, s.name, s.status, s.consent_source) for s in store.iter_subscribers())


# --- the rule -------------------------------------------------------------------------------


def test_the_escape_is_an_exact_inverse_on_every_short_string() -> None:
    alphabet = ["=", "+", "-", "@", "\t", "\r", "'", "a", " ", "\n", '"', ","]
    for n in range(4):
        for chars in itertools.product(alphabet, repeat=n):
            value = "".join(chars)
            cell = neutralize_cell(value)
            assert restore_cell(cell) == value, repr(value)
            assert not dangerous(cell), repr(value)
            assert cell == value or cell == "'" + value


def test_only_the_escape_of_our_export_is_taken_off() -> None:
    assert [neutralize_cell(v) for v in (CALC, "'", "'x", "x", "")] == ["'" + CALC, "''", "''x", "x", ""]
    assert [restore_cell(c) for c in ("'" + CALC, "''", "''x", "'x", "x", "'", "")] == [CALC, "'", "'x", "'x", "x", "'", ""]


# --- the export -------------------------------------------------------------------------------


def test_a_hostile_name_from_the_subscribe_form_is_exported_inert(tmp_path: Path) -> None:
    root = write_site(tmp_path / "site", {}, SITE_TOML)
    app = create_app(root)

    async def signup() -> httpx.Response:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client,
        ):
            return await client.post("/subscribe", data={"email": "victim@example.org", "name": CALC})

    assert asyncio.run(signup()).status_code == 200
    result = runner.invoke(cli, ["subscribers", "export", str(root / "out.csv"), "--site", str(root)])
    assert result.exit_code == 0, result.output
    header, row = rows_of((root / "out.csv").read_text("utf-8"))
    assert tuple(header) == EXPORT_COLUMNS
    assert row[:3] == ["victim@example.org", "'" + CALC, "pending"]
    assert not any(dangerous(cell) for cell in row)


def test_export_to_stdout_neutralises_every_column(tmp_path: Path) -> None:
    root = write_site(tmp_path / "site", {}, SITE_TOML)
    with SQLiteStore.open(db_path(load_config(root))) as store:
        for address, name in HOSTILE:
            store.add(address, name, source="-cli", now=NOW)
    result = runner.invoke(cli, ["subscribers", "export", "--site", str(root)])
    assert result.exit_code == 0, result.output
    rows = rows_of(result.stdout)[1:]
    assert len(rows) == len(HOSTILE)
    assert not any(dangerous(cell) for row in rows for cell in row)
    by_address = {row[0]: row for row in rows}
    assert by_address["'=eq@example.org"][1] == "'="
    assert by_address["''apostrophe@example.org"][1] == "O'Brien"
    assert by_address["calc@example.org"][1:4] == ["'" + CALC, "active", "'-cli"]
    assert by_address["quote-text@example.org"][1] == "''quoted'"


# --- the round trip -----------------------------------------------------------------------------


def test_our_export_reads_back_exactly_with_hostile_names_and_addresses(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "first.db") as first:
        for address, name in HOSTILE:
            first.add(address, name, source="@import", now=NOW)
        exported = io.StringIO()
        assert first.export_csv(exported) == len(HOSTILE)
        before = people(first)
    (tmp_path / "export.csv").write_text(exported.getvalue(), "utf-8", newline="")
    with SQLiteStore.open(tmp_path / "fresh.db") as fresh:
        report = import_file(fresh, tmp_path / "export.csv", secret=SECRET.encode(), now=NOW + dt.timedelta(days=1))
        assert (report.format, report.added, report.bad_rows) == ("review-press export", len(HOSTILE), 0)
        assert people(fresh) == before
        again = io.StringIO()
        fresh.export_csv(again)
    # created_at, updated_at and status_at are each store's own (when the reader arrived there)
    assert [row[:6] + row[8:9] for row in rows_of(again.getvalue())] == [row[:6] + row[8:9] for row in rows_of(exported.getvalue())]


def test_a_file_edited_in_a_spreadsheet_keeps_its_values(tmp_path: Path) -> None:
    """A spreadsheet saves `'=x` as `=x` (the quote only marks text): both read back as `=x`."""
    header = ",".join(EXPORT_COLUMNS) + "\n"
    stamp = "2026-01-01T00:00:00.000000Z"
    text = header + "".join(
        f"{address},{name},active,cli,{stamp},,{stamp},{stamp}\n"
        for address, name in [
            ("'-a@example.org", "'=1+1"),  # as we write it
            ("-b@example.org", "=1+1"),  # as a spreadsheet saves it
            ("c@example.org", "'Quoted"),  # a leading quote that is not our escape is kept
        ]
    )
    (tmp_path / "edited.csv").write_text(text, "utf-8")
    with SQLiteStore.open(tmp_path / "s.db") as store:
        report = import_file(store, tmp_path / "edited.csv", secret=SECRET.encode(), now=NOW)
        assert report.bad_rows == 0
        assert [(s.address, s.name) for s in store.iter_subscribers()] == [
            ("-a@example.org", "=1+1"),
            ("-b@example.org", "=1+1"),
            ("c@example.org", "'Quoted"),
        ]
