"""docs/architecture.md cannot go stale, and the five rooms import only to their left, through public names.

Rooms, left to right: space, evaluators, search, results, and the CLI (``particle_nas/``). A module
imports from its own room, or from a room to its left through the names its ``__init__`` exports;
never from a room to its right, never another room's private module (``particle_nas.search._study``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("space", "evaluators", "search", "results", "particle_nas")  # folder = room, in the order data flows
PAGE = ROOT / "docs" / "architecture.md"


def _room_modules() -> dict[str, list[Path]]:
    return {room: sorted((ROOT / room).rglob("*.py")) for room in ROOMS}


def _package(path: Path) -> str:
    """The dotted package a module of a room belongs to: space/wirings/plain.py -> particle_nas.space.wirings."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    room, inner = parts[0], list(parts[1:-1])
    return ".".join(["particle_nas", *inner] if room == "particle_nas" else ["particle_nas", room, *inner])


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute, relative ones resolved), at its top or inside a function."""
    package = _package(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    return [name for name in found if name == "particle_nas" or name.startswith("particle_nas.")]


def _room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS[:-1] else "particle_nas"


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_only_to_its_left_and_only_public_names(room):
    wrong = []
    for path in _room_modules()[room]:
        for module in _imports(path):
            target = _room_of(module)
            if ROOMS.index(target) > ROOMS.index(room):
                wrong.append(f"{path.relative_to(ROOT)} imports {module} (a room to its right)")
            elif target != room and target != "particle_nas" and any(part.startswith("_") for part in module.split(".")[2:]):
                wrong.append(f"{path.relative_to(ROOT)} imports {module} (another room's private module)")
    assert not wrong, "\n".join(wrong)


def _named_paths() -> set[str]:
    return set(re.findall(r"`((?:space|evaluators|search|results|particle_nas|bench)/[\w/.-]*)`", PAGE.read_text(encoding="utf-8")))


def test_every_module_the_architecture_page_names_exists():
    missing = sorted(name for name in _named_paths() if not (ROOT / name).exists())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_the_architecture_page_names_every_module_of_the_five_rooms():
    named = _named_paths()
    folders = {name for name in named if name.endswith("/")}
    unnamed = [
        str(path.relative_to(ROOT))
        for modules in _room_modules().values()
        for path in modules
        if path.name != "__init__.py" and str(path.relative_to(ROOT)) not in named and not any(str(path.relative_to(ROOT)).startswith(f) for f in folders)
    ]
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"


def test_the_checks_see_imports_and_rooms_as_they_are():
    """The checks above would see a violation: the CLI imports results, and search reads a private module of its own room."""
    cli = _imports(ROOT / "particle_nas" / "cli.py")
    assert any(_room_of(m) == "results" for m in cli) and any(_room_of(m) == "search" for m in cli)
    assert "particle_nas.search._storage" in _imports(ROOT / "search" / "_run.py")
    assert _package(ROOT / "space" / "wirings" / "plain.py") == "particle_nas.space.wirings"


# A function may be at most this long in search/ and particle_nas/ (the CLI's declarative argument parser excepted).
FUNCTION_LINES = 60
LONG_ALLOWED = {"particle_nas/cli.py:build_parser"}


@pytest.mark.parametrize("room", ["search", "particle_nas"])
def test_engine_and_cli_functions_stay_short_and_search_modules_small(room):
    """No function over 60 lines in search/ or particle_nas/ (but build_parser), no search/ module over 300 lines."""
    too_long = []
    for path in _room_modules()[room]:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        if room == "search" and text.count("\n") > 300:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and length > FUNCTION_LINES and f"{name}:{node.name}" not in LONG_ALLOWED:
                too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
