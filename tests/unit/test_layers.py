"""The layer rules of /work/shared/ARCHITECTURE.md ("imports point down only"),
checked on the source: every import statement of every module under fedxmpp/,
read with :mod:`ast` (module level, inside functions and under TYPE_CHECKING
alike, since each is a dependency a reader has to follow)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fedxmpp"

# Each room of fedxmpp/ (first name under fedxmpp) and its layer.  ``chains`` is
# the order of the event chains, read by hooks; the package itself only holds
# the version.
LAYERS = {
    "": 0, "config": 0, "xml": 0, "hooks": 0, "compat": 0, "chains": 0,
    "privileges": 0, "keys": 0,
    "storage": 1, "tls": 1,
    "stream": 2, "session": 2, "router": 2,
    "c2s": 3, "s2s": 3, "component": 3, "http": 3, "im": 3, "features": 3, "muc": 3, "upload": 3, "proxy65": 3,
    "app": 4, "tap": 4, "cli": 4, "cluster": 4, "admin": 4,
}
TRANSPORTS = {"c2s", "s2s", "component", "http"}
BELOW_L3 = {room for room, layer in LAYERS.items() if layer <= 2}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. fedxmpp.c2s.session
    target: str  # the fedxmpp module or package imported
    type_only: bool  # inside an ``if TYPE_CHECKING:`` block
    line: int


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The longest prefix of *name* that is a module of ours (``from a import b``
    may name a module ``a.b`` or a name in ``a``)."""
    while name not in modules() and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, package: str) -> None:
        self.module, self.package = module, package
        self.found: list[Import] = []
        self._type_only = 0

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        self._type_only += guarded
        for child in node.body:
            self.visit(child)
        self._type_only -= guarded
        for child in node.orelse:
            self.visit(child)

    def _add(self, name: str, line: int) -> None:
        if name == "fedxmpp" or name.startswith("fedxmpp."):
            self.found.append(Import(self.module, _resolve(name), self._type_only > 0, line))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[:len(self.package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            self._add(f"{source}.{alias.name}", node.lineno)


@cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for module, path in modules().items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        visitor = _Imports(module, package)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        found.extend(i for i in visitor.found if i.target != module)
    return tuple(found)


def offenders(rooms: set[str], allowed: set[str]) -> list[str]:
    """Imports from a module in *rooms* of a room outside *allowed* (its own room is always allowed)."""
    return [f"{i.module}:{i.line} imports {i.target}" for i in imports()
            if room(i.module) in rooms and room(i.target) not in allowed | {room(i.module)}]


def test_the_checker_sees_imports():
    """The parser finds what is there (else every rule below would pass vacuously):
    a TYPE_CHECKING import, a relative-free from-import and a function-level one."""
    found = {(i.module, i.target, i.type_only) for i in imports()}
    assert ("fedxmpp.im.service", "fedxmpp.im.context", True) in found
    assert ("fedxmpp.app", "fedxmpp.router", False) in found
    assert ("fedxmpp.tap", "fedxmpp.app", False) in found
    assert offenders({"app"}, {"config"})  # the composition root imports everything


def test_every_room_has_a_layer():
    """A new package or top-level module is placed in the layer table (here and in ARCHITECTURE.md)."""
    assert sorted({room(m) for m in modules()} - LAYERS.keys()) == []


def test_layer_0_imports_only_layer_0():
    """config, xml, hooks, compat (and chains) import nothing of fedxmpp above them."""
    level0 = {r for r, layer in LAYERS.items() if layer == 0}
    assert offenders(level0, level0) == []


def test_layer_1_imports_only_layer_0():
    """storage and tls build on config and xml only."""
    assert offenders({"storage", "tls"}, {r for r, layer in LAYERS.items() if layer == 0}) == []


def test_layer_2_imports_only_layer_0():
    """stream, session and router know no storage, transport or IM module."""
    assert offenders({"stream", "session", "router"}, {r for r, layer in LAYERS.items() if layer == 0}) == []


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_transports_import_neither_each_other_nor_im_nor_features(transport: str):
    """c2s, s2s, component and http use layers 0-2, storage and tls; they meet
    the IM core only through what the application injects."""
    assert offenders({transport}, BELOW_L3) == []


def test_im_never_imports_features_transports_or_services():
    """The IM core sits under the features: they import it, never the reverse."""
    assert offenders({"im"}, BELOW_L3) == []


def test_features_import_only_im_and_below():
    """Features hook into events, not into transports or services."""
    assert offenders({"features"}, BELOW_L3 | {"im"}) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _graph(*, type_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for i in imports():
        # A package's __init__ running first is not a dependency on the package.
        if (type_only or not i.type_only) and not i.module.startswith(i.target + "."):
            edges.setdefault(i.module, set()).add(i.target)
    return edges


def test_no_import_cycle_at_run_time():
    """Outside TYPE_CHECKING blocks no module imports one that imports it back."""
    assert _cycles(_graph(type_only=False)) == []


@pytest.mark.parametrize("context", ["fedxmpp.c2s.context", "fedxmpp.component.context", "fedxmpp.s2s.context",
                                     "fedxmpp.im.context"])
def test_shared_contexts_are_in_no_import_cycle(context: str):
    """What a transport's (or the IM core's) modules share lives in a context
    module that imports none of them back, not even for type annotations."""
    assert context in modules()
    assert [c for c in _cycles(_graph(type_only=True)) if context in c] == []


def test_the_listener_modules_are_in_no_import_cycle():
    """The modules that build streams (c2s.service, component.service) are
    imported by the application only, as the s2s listener already was."""
    cyclic = {m for c in _cycles(_graph(type_only=True)) for m in c}
    assert cyclic & {"fedxmpp.c2s.service", "fedxmpp.c2s.negotiation", "fedxmpp.component.service",
                     "fedxmpp.component.handshake", "fedxmpp.component.session",
                     "fedxmpp.component.privilege"} == set()
