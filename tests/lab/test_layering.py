"""Data flows one way: the studies are a client of the lab, never imported by it (not even by a
function-local import, which would hide an import cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import resnorm.lab

LAB = Path(resnorm.lab.__file__).parent
FORBIDDEN = "resnorm.studies"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement anywhere in ``tree`` names (``from a import b`` gives
    ``a`` and ``a.b``, since ``b`` may be a submodule)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            found += [
                (node.lineno, arg.value)
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
    return found


def _violations(source: str) -> list[tuple[int, str]]:
    return [
        (line, name)
        for line, name in _imported_modules(ast.parse(source))
        if name == FORBIDDEN or name.startswith(FORBIDDEN + ".")
    ]


def test_no_module_of_the_lab_imports_the_studies() -> None:
    files = sorted(LAB.rglob("*.py"))
    assert len(files) > 5, f"the lab's sources were not found under {LAB}"
    found = {
        f"{path.relative_to(LAB.parent)}:{line}": name
        for path in files
        for line, name in _violations(path.read_text(encoding="utf-8"))
    }
    assert not found, f"lab modules import the studies: {found}"


def test_the_scan_sees_function_local_and_from_imports() -> None:
    source = (
        "def f():\n    import resnorm.studies  # noqa\n"
        "def g():\n    from resnorm import studies\n"
        "from resnorm.studies.skip import skip\n"
        "import resnorm.studiesx\n"
    )
    assert sorted({line for line, _ in _violations(source)}) == [2, 4, 5]
