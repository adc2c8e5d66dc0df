"""The import graph of src/dinrec points down the layers and has no cycle between files.

The layers are those of ../shared/design/ARCHITECTURE.md, lowest first; a module may import
its own layer and the ones below it. data/ and serving/ sit beside the stack: data/ needs
only the column and schema types, serving/ loads bundles and never reaches distributed
training, experiments or the CLI. The graph is built with ast from the source files (every
`import dinrec...`, module level or inside a function, is an edge); imports under
`if TYPE_CHECKING:` never run, so they may close a loop between files of one layer (a callback
annotating its Trainer), but must point down like the others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "dinrec"

# (layer, module prefixes), lowest first. The longest matching prefix names a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("dinrec.version", "dinrec.errors", "dinrec.hashing", "dinrec.feature_column",
              "dinrec.metrics", "dinrec.kernels")),
    ("schema", ("dinrec.schema", "dinrec.history_groups", "dinrec.inputs")),
    ("data", ("dinrec.data",)),
    ("layers", ("dinrec.layers",)),
    # The bundle format writes and reads the networks (see test_the_bundle_format_sits_...).
    ("networks", ("dinrec.models.config", "dinrec.models.network", "dinrec.bundle")),
    ("training", ("dinrec.training",)),
    ("models", ("dinrec.models",)),
    ("serving", ("dinrec.serving",)),
    ("distributed", ("dinrec.training.distributed",)),
    ("experiment", ("dinrec.experiment",)),
    ("cli", ("dinrec.cli",)),
    ("api", ("dinrec", "dinrec.__main__")),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
# Beside the stack: what each may not import, though it sits above it in LAYERS.
FORBIDDEN = {
    "data": {"layers", "networks", "training", "models", "serving", "distributed",
             "experiment", "cli", "api"},
    "serving": {"distributed", "experiment", "cli", "api"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    best, length = "", -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > length:
                best, length = name, len(prefix)
    assert best, f"{module} is in no layer of LAYERS: add it"
    return best


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names an import statement reaches (a from-import's names included, since
    `from dinrec.serving import scorer` imports the module dinrec.serving.scorer)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([node.module] if node.module else [])])
    for alias in node.names:
        yield f"{base}.{alias.name}"
        yield base


def import_graph() -> dict[str, dict[str, bool]]:
    """{module: {imported module: imported only under TYPE_CHECKING}} for src/dinrec."""
    files = {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, bool]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = _type_checking_nodes(tree)
        edges: dict[str, bool] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = list(_targets(node, module, path.name == "__init__.py"))
            # `from a.b import c`: the module a.b.c when it exists, else a.b (c is a name in it).
            found = {resolve(n) for n in names if n in files} or {resolve(n) for n in names}
            for target in found - {None, module}:
                assert target is not None
                if target.split(".")[0] != PACKAGE:
                    continue
                edges[target] = edges.get(target, True) and id(node) in typing_only
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan), runtime edges only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, typing_only in graph[v].items():
            if typing_only:
                continue
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


def upward_imports(graph: dict[str, dict[str, bool]]) -> list[str]:
    """'a (layer) -> b (layer)' for each import of a higher layer or a forbidden one."""
    bad = []
    for module, edges in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(edges):
            there = layer_of(target)
            if RANK[there] > RANK[here] or there in FORBIDDEN.get(here, ()):
                bad.append(f"{module} ({here}) -> {target} ({there})")
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, bool]]:
    return import_graph()


def test_every_module_has_a_layer(graph: dict[str, dict[str, bool]]) -> None:
    for module in graph:
        layer_of(module)


def test_no_import_cycle_between_files(graph: dict[str, dict[str, bool]]) -> None:
    assert cycles(graph) == []


def test_no_import_points_up_the_layers(graph: dict[str, dict[str, bool]]) -> None:
    assert upward_imports(graph) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    fake = {"dinrec.data.a": {"dinrec.data.b": False, "dinrec.serving.x": False},
            "dinrec.data.b": {"dinrec.data.a": False},
            "dinrec.serving.x": {}}
    assert cycles(fake) == [["dinrec.data.a", "dinrec.data.b"]]
    assert upward_imports(fake) == ["dinrec.data.a (data) -> dinrec.serving.x (serving)"]
    typing_only = {"dinrec.training.a": {"dinrec.training.b": True},
                   "dinrec.training.b": {"dinrec.training.a": False}}
    assert cycles(typing_only) == []


def test_the_graph_sees_lazy_and_relative_imports(graph: dict[str, dict[str, bool]]) -> None:
    # cli.main imports its distributed helpers inside main(): a lazy import is an edge.
    assert "dinrec.training.distributed.launch" in " ".join(graph["dinrec.cli.main"])
    assert "dinrec.layers.activation" in graph["dinrec.models.config"]


def test_the_bundle_format_sits_with_the_networks_it_writes(
    graph: dict[str, dict[str, bool]],
) -> None:
    # Not at the bottom: a bundle's files are a FeatureSchema, a ModelConfig and an
    # InterestNetwork's weights, and reading or checking one imports them.
    assert layer_of("dinrec.bundle") == "networks"
    reads = {"dinrec.schema", "dinrec.models.config", "dinrec.models.network"}
    assert reads <= set(graph["dinrec.bundle"])
    # Below training: the Trainer's ModelCheckpoint callback saves bundles.
    assert "dinrec.bundle" in graph["dinrec.training.callbacks"]
    # The model classes register into the format; it imports none of them, and nothing in
    # the layers below the networks imports the format.
    assert "dinrec.bundle" in graph["dinrec.models.din"]
    assert [t for t in graph["dinrec.bundle"] if RANK[layer_of(t)] > RANK["networks"]] == []
    below = [m for m, edges in graph.items()
             if RANK[layer_of(m)] < RANK["networks"] and "dinrec.bundle" in edges]
    assert below == []
