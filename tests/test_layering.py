"""The rooms of DESIGN.md and who may import whom, checked on every module of our five packages.

The check reads each source file's imports with ``ast`` (module-level, function-level and
``importlib.import_module("...")`` calls alike), so a lazy import inside a function breaks the
layering as surely as one at the top, and the check is fast. A second test imports every module, so
a stale import left by a move fails here rather than in the one command that reaches it.
"""

import ast
import importlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# Which of our other packages each may import (see DESIGN.md, "Rooms").
MAY_IMPORT = {
    "shards": set(),
    "datagen": {"shards"},
    "trainers": {"shards"},
    "cluster": {"shards", "datagen", "trainers"},
    "experiments": {"shards", "datagen", "trainers", "cluster"},
}
# The one import against the layering: the CLI's experiment verb, inside its handler only.
ALLOWED = {("cluster.cli", "_experiment", "experiments")}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    function: str | None  # the innermost function the import is in; None at module level
    target: str  # the imported module, absolute
    where: str  # file:line


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """A relative import's target as an absolute module name."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, where: str):
        self.module, self.is_package, self.where = module, is_package, where
        self.functions: list[str] = []
        self.imports: list[Import] = []

    def _add(self, target: str, node: ast.AST) -> None:
        self.imports.append(Import(self.module, self.functions[-1] if self.functions else None, target, f"{self.where}:{node.lineno}"))

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._add(_absolute(self.module, self.is_package, node.level, node.module), node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node)
        self.generic_visit(node)


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by dotted name (every .py file, in packages or not)."""
    return {_module_name(root, path): path for path in sorted((root / package).rglob("*.py"))}


def module_imports(root: Path, name: str, path: Path) -> list[Import]:
    collector = _ImportCollector(name, path.name == "__init__.py", str(path.relative_to(root)))
    collector.visit(ast.parse(path.read_text(), filename=str(path)))
    return collector.imports


def layering_violations(root: Path) -> list[str]:
    """Each import of one of our packages that its importer's row of ``MAY_IMPORT`` does not allow."""
    violations = []
    for package, allowed in MAY_IMPORT.items():
        for name, path in package_modules(root, package).items():
            for found in module_imports(root, name, path):
                top = found.target.split(".")[0]
                if top in MAY_IMPORT and top != package and top not in allowed \
                        and (found.module, found.function, top) not in ALLOWED:
                    inside = f" (in {found.function})" if found.function else ""
                    violations.append(f"{found.where}: {found.module}{inside} imports {found.target}; "
                                      f"{package} may import {', '.join(sorted(allowed)) or 'none of ours'}")
    return violations


def test_every_package_imports_only_the_rooms_below_it():
    assert layering_violations(ROOT) == []


def test_the_check_reads_every_module_and_the_clis_lazy_experiment_import():
    modules = {package: package_modules(ROOT, package) for package in MAY_IMPORT}
    assert all(len(found) >= 2 for found in modules.values()), {package: len(found) for package, found in modules.items()}
    assert "experiments.colored_digits.experiment" in modules["experiments"]
    cli = module_imports(ROOT, "cluster.cli", modules["cluster"]["cluster.cli"])
    experiment_imports = [found for found in cli if found.target.startswith("experiments")]
    # The exception is used, and only lazily: cluster.cli does not import experiments at start-up.
    assert experiment_imports and all(found.function == "_experiment" for found in experiment_imports)


PLANTED = {
    "shards/__init__.py": "",
    "shards/files.py": "from . import names\nfrom .names import pattern\n",
    "shards/names.py": "def pattern():\n    from cluster.config import JobConfig  # lazy, still a violation\n",
    "datagen/__init__.py": "import shards\n",
    "datagen/service.py": "from trainers.loop import step\n",
    "trainers/__init__.py": "",
    "trainers/data/__init__.py": "from .. import loop\n",
    "trainers/loop.py": "import datagen.config as config\n",
    "cluster/__init__.py": "",
    "cluster/cli.py": """
        def _experiment():
            from experiments.registry import load_experiment
        def _run():
            import experiments
    """,
    "cluster/run.py": "import importlib\nharness = importlib.import_module('experiments.harness')\n",
    "experiments/__init__.py": "import cluster, datagen, shards, trainers\n",
}


def test_a_planted_violation_of_each_rule_is_found(tmp_path):
    for name, source in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(source))
    found = {line.split(": ", 1)[1].split(";")[0] for line in layering_violations(tmp_path)}
    assert found == {
        "shards.names (in pattern) imports cluster.config",
        "datagen.service imports trainers.loop",
        "trainers.loop imports datagen.config",
        "cluster.cli (in _run) imports experiments",
        "cluster.run imports experiments.harness",
    }


def test_relative_imports_resolve_against_the_importing_module():
    assert _absolute("trainers.data", True, 2, "loop") == "trainers.loop"
    assert _absolute("trainers.data.static", False, 1, None) == "trainers.data"
    assert _absolute("shards.files", False, 1, "names") == "shards.names"


@pytest.mark.parametrize("package", list(MAY_IMPORT))
def test_every_module_imports(package):
    for name in package_modules(ROOT, package):
        importlib.import_module(name)
