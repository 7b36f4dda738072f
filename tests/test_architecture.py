"""The import rules of docs/architecture.md, read from the source (AST, nothing imported, < 1 s).

- No import cycle between the top-level packages (``rewards``, ``data_prep``, ``evaluation``,
  ``recipe``) nor between the rooms of the recipe (``recipe.rlmr`` itself, ``cpu``, ``dev``,
  ``experiment``, ``rollout``).
- ``rewards`` (the ground floor and the reward stage) imports no other stage.
- ``data_prep`` and ``evaluation`` reach ``rewards`` only through its ground-floor modules.
- No ``from X import _private`` across packages or rooms: what another room needs gets a public name.

Every import counts, the lazy ones inside functions included: a cycle that only closes at run time
is still a cycle to a reader.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rewards", "data_prep", "evaluation", "recipe")
# Rooms: a module belongs to the longest of these that prefixes its name.
ROOMS = (
    "rewards",
    "data_prep",
    "evaluation",
    "recipe.rlmr",
    "recipe.rlmr.cpu",
    "recipe.rlmr.dev",
    "recipe.rlmr.experiment",
    "recipe.rlmr.pipeline",
    "recipe.rlmr.rollout",
)
# The ground floor: the contracts every stage shares (docs/architecture.md).
FLOOR = {
    "rewards.spec",  # the constraint spec
    "rewards.constraints",  # the constraint catalog and its deterministic checks
    "rewards.nltk_data",  # the checks' offline NLTK data
    "rewards.reward_info",  # the reward-info keys
    "rewards.readers",  # input-file readers, shipped benchmark files
    "rewards.http",  # the pooled HTTP client, retries, errors
    "rewards.chat",  # the one OpenAI-compatible chat client
    "rewards.config",  # config base classes (StrictConfig, BackendConfig, ...)
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str | None:
    rooms = [room for room in ROOMS if module == room or module.startswith(room + ".")]
    return max(rooms, key=len) if rooms else None


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def sources(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def edges(modules: dict[str, Path], root: Path = ROOT) -> list[tuple[str, str, list[str], int]]:
    """(importer, imported module of ours, names, line); ``from pkg import mod`` counts as importing ``pkg.mod``."""
    result = []
    for name, path in modules.items():
        for target, names, line in imports(path, root):
            if target.split(".")[0] not in PACKAGES:
                continue
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for imported in submodules or [target]:
                result.append((name, imported, [] if submodules else names, line))
    return result


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def unit_graph(all_edges, unit) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported, _, _ in all_edges:
        a, b = unit(importer), unit(imported)
        if a and b and a != b:
            graph[a].add(b)
    return graph


def violations(root: Path = ROOT) -> list[str]:
    """Every broken rule in the tree at ``root``, one line each."""
    modules = sources(root)
    all_edges = edges(modules, root)
    found = []
    for unit, label in ((lambda m: m.split(".")[0], "top-level packages"), (room_of, "rooms")):
        graph = unit_graph(all_edges, unit)
        if cycle := find_cycle(graph):
            detail = [
                f"{importer}:{line} imports {imported}"
                for a, b in zip(cycle, cycle[1:], strict=False)
                for importer, imported, _, line in all_edges
                if unit(importer) == a and unit(imported) == b
            ]
            found.append(f"import cycle between {label}: {' -> '.join(cycle)} ({'; '.join(detail[:6])})")
    for importer, imported, names, line in all_edges:
        top, target_top = importer.split(".")[0], imported.split(".")[0]
        where = f"{importer}:{line}"
        if top == "rewards" and target_top != "rewards":
            found.append(f"{where} imports {imported}: rewards (the ground floor) imports no other stage")
        if top in ("data_prep", "evaluation") and target_top == "rewards" and imported not in FLOOR:
            found.append(f"{where} imports {imported}: {top} reaches rewards only through the floor {sorted(FLOOR)}")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and room_of(importer) != room_of(imported):
            found.append(f"{where} imports private {private} from {imported} (another room): give it a public name")
    return found


def test_no_cycle_no_arrow_back_to_the_floor_no_private_name_across_rooms():
    found = violations()
    assert not found, "\n".join(found)


def test_the_floor_modules_exist():
    modules = sources()
    assert sorted(FLOOR - set(modules)) == []


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"rewards/a.py": "from data_prep import b\n", "data_prep/b.py": "import rewards.a\n"}, "cycle"),
        ({"rewards/a.py": "def f():\n    from data_prep.b import g\n", "data_prep/b.py": ""}, "imports no other"),
        ({"data_prep/b.py": "from rewards.manager import X\n", "rewards/manager.py": ""}, "only through the floor"),
        ({"evaluation/c.py": "from rewards.constraints import _ifeval\n", "rewards/constraints.py": ""}, "private"),
        (
            {"recipe/rlmr/cpu/x.py": "from ..dev import y\n", "recipe/rlmr/dev/y.py": "from ..cpu import x\n"},
            "cycle between rooms",
        ),
        ({"data_prep/b.py": "from rewards.spec import ConstraintSpec\n", "rewards/spec.py": ""}, None),
    ],
)
def test_the_rules_catch_what_they_claim(tmp_path, files, expected):
    """Each rule on a made-up tree: it fires on the breach (and a clean import passes)."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = violations(tmp_path)
    if expected is None:
        assert found == []
    else:
        assert any(expected in line for line in found), found
