"""The package stack is one way (docs/architecture in README): gateway at the base; router and
proxy on it; loadtest on all three; nothing imports loadtest. Every import counts, including
those inside functions, since a lazy import still ties the packages together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "router", "proxy", "loadtest")

# What each package may import from the others.
ALLOWED: dict[str, set[str]] = {
    "gateway": set(),
    "router": {"gateway"},
    "proxy": {"gateway"},
    "loadtest": {"gateway", "router", "proxy"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def violations(root: Path) -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            for line, top in imports_of(path):
                if top in PACKAGES and top != pkg and top not in ALLOWED[pkg]:
                    found.append(f"{path.relative_to(root)}:{line} imports {top}")
    return found


def test_the_package_stack_is_one_way():
    assert violations(ROOT) == []


def test_the_walker_sees_a_violation_even_inside_a_function(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "gateway" / "x.py").write_text("def f():\n    from router import api\n")
    (tmp_path / "proxy" / "y.py").write_text("import router.config\nfrom gateway import codec\n")
    (tmp_path / "router" / "z.py").write_text("from . import sessions\nimport loadtest\n")
    assert violations(tmp_path) == [
        "gateway/x.py:2 imports router",
        "router/z.py:2 imports loadtest",
        "proxy/y.py:1 imports router",
    ]


@pytest.mark.parametrize("pkg", PACKAGES)
def test_each_package_has_files_to_walk(pkg):
    assert list((ROOT / pkg).glob("*.py")), pkg
