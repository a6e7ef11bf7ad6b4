"""The import graph follows the layering written in the README's Architecture section.

Every module of the package belongs to one layer; a module imports only from its own layer or lower ones,
at the top of the file or inside a function alike. The README's block is the source of truth, so the
documentation and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_LINE = re.compile(r"^\s*(\d+)\s+([a-z-]+)\s+((?:mailer[\w.]*\s*)+)$")


def readme_layers() -> list[tuple[str, list[str]]]:
    """(name, module prefixes) per layer, lowest first, from the README's ```layers block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "README.md has no ```layers block in its Architecture section"
    layers = []
    for line in block.group(1).splitlines():
        match = LAYER_LINE.match(line)
        if match:
            assert int(match.group(1)) == len(layers) + 1, f"layers out of order at {line!r}"
            layers.append((match.group(2), match.group(3).split()))
    return layers


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    found = [
        index
        for index, (_, prefixes) in enumerate(layers)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(found) if found else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of the package in ``path``, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "mailer" or name.startswith("mailer.")]


def test_the_readme_names_ten_layers_from_base_to_cli() -> None:
    names = [name for name, _ in readme_layers()]
    assert names[0] == "base" and names[-1] == "cli" and len(names) == len(set(names))


def test_every_module_belongs_to_a_layer() -> None:
    layers = readme_layers()
    modules = [module_name(path) for path in sorted((ROOT / "mailer").rglob("*.py"))]
    orphans = [m for m in modules if m != "mailer" and "migrations" not in m and layer_of(m, layers) is None]
    assert orphans == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    layers = readme_layers()
    upward = []
    for path in sorted((ROOT / "mailer").rglob("*.py")):
        module = module_name(path)
        own = layer_of(module, layers)
        if own is None:
            continue
        for line, imported in imported_modules(path):
            target = layer_of(imported, layers)
            if target is not None and target > own:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({layers[own][0]}) imports {imported} ({layers[target][0]})"
                )
    assert upward == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    layers = readme_layers()
    assert layer_of("mailer.store.outbox", layers) < layer_of("mailer.web.server", layers)
    assert layer_of("mailer.compose.render", layers) < layer_of("mailer.delivery.transport", layers)
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from mailer.web.server import start_in_loop\n")
    assert imported_modules(probe) == [(2, "mailer.web.server.start_in_loop")]
