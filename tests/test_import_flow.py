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
