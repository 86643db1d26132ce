"""The store owns every SQL statement (DESIGN.md): no module outside `review_press.store` holds
SQL text or calls a database connection's `execute`, checked on the source with `ast`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import review_press

SRC = Path(review_press.__file__).parent
STORE = SRC / "store"
SQL = re.compile(
    r"^\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TEMP |UNIQUE )?(TABLE|INDEX)|DROP TABLE|ALTER TABLE|PRAGMA|BEGIN|COMMIT|ROLLBACK)\b"
)


def _sql_outside_the_store(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.is_relative_to(STORE):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
                found.append(f"{path.relative_to(root)}:{node.lineno}: SQL text")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "executescript")
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: .{node.func.attr}()")
    return found


def test_the_check_finds_sql_and_execute_calls(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text('rows = conn.execute("SELECT id FROM subscribers")\nQ = f"UPDATE deliveries SET status = {1}"\n')
    assert sorted(_sql_outside_the_store(tmp_path)) == ["leaky.py:1: .execute()", "leaky.py:1: SQL text", "leaky.py:2: SQL text"]


def test_no_sql_outside_the_store_package() -> None:
    assert _sql_outside_the_store(SRC) == []
