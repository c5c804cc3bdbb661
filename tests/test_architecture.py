"""The house rules of docs/architecture.md, checked on the source: layers, one Store interface, one public API."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

import runjournal
from runjournal.journal.jsonl import JsonlStore
from runjournal.journal.memory import MemoryStore
from runjournal.journal.postgres import PgStore
from runjournal.journal.store import Store

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("journal", "projections", "cli")
STORE_MODULES = ("journal/jsonl/", "journal/postgres/", "journal/memory.py", "journal/stores.py")
"""A store's own modules (and the factory that maps a --store value to a store class)."""
TEST_SUPPORT = "journal/testing/"
"""Shipped test support (builders, strategies, the contract suite): above every layer, like a test."""
CONCRETE_STORES = {"JsonlStore", "PgStore", "MemoryStore", "StoreLayout", "PgRunWriter", "JsonlRunWriter"}
BACKEND_PROBES = {"lock_scope", "url", "logs_dir", "runs_dir", "log_dir", "local"}
"""Attributes that only some stores have: asking a store for them is asking which kind it is."""


def sources() -> Iterator[tuple[str, ast.Module]]:
    """Every module of the installed package's three packages, as (path relative to the repo, AST)."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def imported_modules(tree: ast.Module) -> Iterator[str]:
    """Every module an import statement (anywhere in the file) names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _names_a_store(node: ast.expr) -> bool:
    text = ast.unparse(node).lower()
    return text.endswith("store") or text.endswith("layout")


def backend_branches(tree: ast.Module) -> Iterator[str]:
    """Places that name a concrete store class or ask a store which kind it is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in CONCRETE_STORES:
            yield f"line {node.lineno}: names {node.id}"
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] in CONCRETE_STORES:
            yield f"imports {node.name}"
        elif isinstance(node, ast.Attribute) and node.attr in BACKEND_PROBES and _names_a_store(node.value):
            yield f"line {node.lineno}: {ast.unparse(node)}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            if node.args and _names_a_store(node.args[0]):
                yield f"line {node.lineno}: {ast.unparse(node)}"


@pytest.mark.parametrize(("layer", "above"), [("journal", ("runjournal.projections", "runjournal.cli")),
                                              ("projections", ("runjournal.cli",))])
def test_imports_flow_one_way(layer: str, above: tuple[str, ...]) -> None:
    """journal imports nothing from projections or cli, and projections nothing from cli (test support aside)."""
    wrong = [
        f"{rel} imports {module}"
        for rel, tree in sources()
        if rel.startswith(f"{layer}/") and not rel.startswith(TEST_SUPPORT)
        for module in imported_modules(tree)
        if module.startswith(above)
    ]
    assert wrong == []


def test_every_import_is_under_the_one_import_name() -> None:
    """No module imports journal, projections or cli as top-level names: installed, only runjournal exists."""
    wrong = [
        f"{rel} imports {module}"
        for rel, tree in sources()
        for module in imported_modules(tree)
        if module.split(".")[0] in PACKAGES
    ]
    assert wrong == []


def test_no_module_outside_the_stores_branches_on_the_backend() -> None:
    """Outside a store's own modules nothing names a concrete store class or probes for backend-only attributes."""
    wrong = [
        f"{rel}: {finding}"
        for rel, tree in sources()
        if not rel.startswith((*STORE_MODULES, TEST_SUPPORT))
        for finding in backend_branches(tree)
    ]
    wrong += [f"{rel} imports {module}" for rel, tree in sources() if not rel.startswith((*STORE_MODULES, TEST_SUPPORT))
              for module in imported_modules(tree)
              if module.startswith(("runjournal.journal.jsonl", "runjournal.journal.postgres", "runjournal.journal.memory"))]
    assert wrong == []


def test_the_checker_catches_what_it_is_for() -> None:
    """The backend checker flags an isinstance on a store class, a lock_scope probe and a hasattr on a store."""
    tree = ast.parse(
        "if isinstance(store, JsonlStore): pass\n"
        "if store.lock_scope == 'server': pass\n"
        "if hasattr(self.store, 'url'): pass\n"
    )
    assert len(list(backend_branches(tree))) == 3


@pytest.mark.parametrize("store_class", [JsonlStore, PgStore, MemoryStore])
def test_every_store_implements_the_whole_interface(store_class: type[Store]) -> None:
    """Each store subclasses Store and leaves no capability abstract."""
    assert issubclass(store_class, Store)
    assert inspect.isabstract(store_class) is False


def test_the_interface_names_every_capability() -> None:
    """The Store ABC names create, append (through the writer), read, repair, history, follow, liveness, start, verify, transfer, retention."""
    capabilities = {"create", "open_writer", "read", "run_ids", "exists", "resolve", "location", "locked_run",
                    "summaries", "take_fold", "watch", "writer_facts", "writer_alive", "workflow_lock", "verify",
                    "anchors", "raw_lines", "import_lines", "prune", "address"}
    assert capabilities <= Store.__abstractmethods__
    assert "side_files" in Store.__annotations__


def test_pyproject_installs_every_package() -> None:
    """Every folder of journal/, projections/ and cli/ with an __init__.py is listed in pyproject.toml's packages."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {"runjournal"} | {
        "runjournal." + init.parent.relative_to(REPO).as_posix().replace("/", ".")
        for package in PACKAGES for init in (REPO / package).rglob("__init__.py")
    }
    assert listed == present


def test_the_public_api_resolves() -> None:
    """Every name in runjournal.__all__ is importable from the top-level package."""
    missing = [name for name in runjournal.__all__ if getattr(runjournal, name, None) is None]
    assert missing == [] and "start_run" in runjournal.__all__ and "open_store" in runjournal.__all__
