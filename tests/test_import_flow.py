"""Data flows one way (DESIGN.md): checked on the source with `ast`, imports inside functions included.

The graph has an edge A -> B for every `import`/`from ... import` in module A that names module B
of review_press (a `from pkg import name` names pkg.name when that is a module, else pkg).
Imports under `if TYPE_CHECKING:` are left out: they are for the type checker and never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import review_press

SRC = Path(review_press.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("review_press", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
        else:
            todo.extend(ast.iter_child_nodes(node))


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text("utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            for target in targets:
                while target and target not in files:  # `import review_press.a.b` where b is a name
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


GRAPH = _graph()


def _inside(module: str, *roots: str) -> bool:
    return any(module == f"review_press.{r}" or module.startswith(f"review_press.{r}.") for r in roots)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in GRAPH.items() if _inside(a, *sources) for b in deps if _inside(b, *forbidden))


def test_the_graph_sees_the_package() -> None:
    assert "review_press.edition.plan" in GRAPH and "review_press.config" in GRAPH["review_press.edition.plan"]


def test_the_edition_knows_nothing_of_build_publish_web_or_cli() -> None:
    assert _violations(("edition",), ("build", "publish", "web", "cli")) == []


def test_content_markup_and_site_know_nothing_downstream() -> None:
    assert _violations(("content", "markup", "site"), ("pages", "feeds", "edition", "publish", "web", "store")) == []


def test_web_imports_neither_publish_nor_build() -> None:
    assert _violations(("web",), ("publish", "build")) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_there_is_no_import_cycle_among_review_press_modules() -> None:
    assert _cycles(GRAPH) == []


TESTS = Path(__file__).parent
SHARED_HELPERS = ("snapshot", "wait_for")


def test_test_modules_import_helpers_from_helper_modules_and_each_helper_has_one_home() -> None:
    """A test module never imports another test module (shared helpers live in plain modules such
    as sites.py, publishing.py, live_web.py, files.py, waiting.py), and each shared helper is
    defined in one file only."""
    test_modules = {path.stem for path in TESTS.glob("test_*.py")}
    cross: list[str] = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            cross += [f"{path.name}:{node.lineno} imports {name}" for name in names if name.split(".")[0] in test_modules]
    assert cross == []
    homes: dict[str, list[str]] = {name: [] for name in SHARED_HELPERS}
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in homes and path.name not in homes[node.name]:
                homes[node.name].append(path.name)
    assert {name: files for name, files in homes.items() if len(files) > 1} == {}
