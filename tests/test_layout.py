"""The layout's rules, read from the source (every import, including those inside functions): pipelines -> components
-> waveforms and never back; the library never imports kfp; no import circles inside the library; the command line
lives in waveforms/cli/ (no argparse elsewhere in the library); only the stages, the local search and the CLI import
the trainer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("waveforms", "components", "pipelines")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (absolute names; `from a import b` gives a and
    a.b, since b may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name and m not in PACKAGES}
            for name, path in modules.items()}  # fmt: skip


def test_arrows_point_one_way_and_the_library_never_imports_kfp():
    for name, path in ((module_name(p), p) for p in (ROOT / "waveforms").rglob("*.py")):
        named = imports_of(path)
        assert not any(m == "kfp" or m.startswith(("kfp.", "components", "pipelines")) for m in named), name
    for path in (ROOT / "components").rglob("*.py"):
        assert not any(m.startswith("pipelines") for m in imports_of(path)), path


def test_no_import_circles_inside_the_library():
    edges = {name: targets for name, targets in graph().items() if name.startswith("waveforms")}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(target) :] + [target]))
            if target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def test_the_command_line_lives_in_the_cli_package_and_only_runners_import_the_trainer():
    runners = {"waveforms.stages", "waveforms.tuning.local"}
    # config.py builds argparse options from dataclass fields for the CLI; nothing else in the library parses flags
    allowed_argparse = {"waveforms.config"}
    for path in (ROOT / "waveforms").rglob("*.py"):
        name = module_name(path)
        if name.startswith("waveforms.cli"):
            continue
        named = imports_of(path)
        assert name in allowed_argparse or "argparse" not in named, f"{name} holds command-line code"
        assert name in runners or "waveforms.train" not in named, f"{name} imports the trainer"
