"""The package's layering: evaluation and inference never import the training code (a scorer needs no trainer),
and no command module imports another command module's internals in a cycle."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "adplg"


def _imports(path: Path) -> set[str]:
    """Every ``adplg.*`` module a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adplg"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # ``from adplg.cli import score``
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("adplg"))
    return out


def test_evaluation_and_inference_do_not_import_training():
    offenders = []
    for folder in ("evaluation", "inference", "models", "data", "losses"):
        for path in (SRC / folder).rglob("*.py"):
            bad = sorted(m for m in _imports(path) if m == "adplg.training" or m.startswith("adplg.training."))
            if bad:
                offenders.append(f"{path.relative_to(SRC)}: {bad}")
    assert not offenders, offenders


def test_no_import_cycles_between_modules():
    modules = {}
    for path in SRC.rglob("*.py"):
        name = "adplg." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = {m for m in _imports(path)}
    cycles = sorted(f"{a} <-> {b}" for a, deps in modules.items() for b in deps
                    if a < b and b in modules and a in modules[b])
    assert not cycles, cycles
