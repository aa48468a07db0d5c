"""The package's architecture, enforced: folders are layers, arrows point down, no folder-level cycles, files under
500 lines, no private names used across modules, keyword-only records, and a light ``import adplg.config``."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "adplg"
MAX_LINES = 500

# Every top-level unit of the package (a folder, or a module at the top) and its layer: a unit imports units of its
# own layer or lower ones only. ``adplg`` is the package root (its lazy ``__init__``): nothing imports it.
LAYERS = {
    "errors": 0, "_version": 0, "conventions": 0, "precision": 0,
    "io": 1, "runtime": 1, "config": 1, "preset_files": 1, "preset_diff": 1,
    "data": 2, "models": 2, "losses": 2, "engines": 2, "alert_rules": 2,
    "checkpoints": 3, "features": 3, "evaluation": 3, "training": 3, "baselines": 3, "doctor": 3,
    "inference": 4,
    "live": 5, "deploy": 5, "report": 5,
    "api": 6, "demo": 6, "service": 6,
    "cli": 7,
    "adplg": 8,
}
# arrows that the layers allow but the design does not: a scorer needs no trainer, evaluation no scorer
FORBIDDEN = {
    "training": {"inference", "live", "deploy", "report", "features"},
    "evaluation": {"inference", "training"},
    "inference": {"training"},
    "live": {"training"},
    "deploy": {"training", "inference", "live"},
    "report": {"training", "live"},
}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "adplg"


def _imports(path: Path) -> set[str]:
    """Every ``adplg.*`` module a file imports, at the top or inside functions (a relative import is refused)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute adplg.* imports")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "adplg":
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # ``from adplg.cli import score``
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "adplg")
    return out


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        name = ".".join(["adplg", *path.relative_to(SRC).with_suffix("").parts])
        out[name.removesuffix(".__init__")] = path
    return out


def _unit_graph() -> dict[str, dict[str, list[str]]]:
    """``{unit: {imported unit: [importing module, ...]}}`` over every module of the package."""
    graph: dict[str, dict[str, list[str]]] = {}
    modules = _modules()
    for name, path in modules.items():
        for target in _imports(path):
            if target not in modules:  # ``from adplg.x import name``: keep the module part
                target = target.rsplit(".", 1)[0]
            if target not in modules:
                continue
            a, b = _unit(name), _unit(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, []).append(name)
    return graph


def test_every_unit_has_a_layer():
    units = {_unit(name) for name in _modules()}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_point_down_the_layers():
    offenders = [f"{a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]}) in {sorted(set(where))}"
                 for a, targets in _unit_graph().items() for b, where in targets.items()
                 if LAYERS.get(b, 0) > LAYERS.get(a, 0) or b in FORBIDDEN.get(a, ())]
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles_between_folders():
    graph = {a: set(targets) for a, targets in _unit_graph().items()}
    cycles = []

    def visit(unit: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(unit, ())):
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif len(path) < len(LAYERS):
                visit(nxt, path + [nxt])

    for unit in sorted(graph):
        visit(unit, [unit])
    assert not cycles, sorted(set(cycles))


def test_no_import_cycles_between_modules():
    modules = _modules()
    deps = {name: {m if m in modules else m.rsplit(".", 1)[0] for m in _imports(path)}
            for name, path in modules.items()}
    cycles = sorted(f"{a} <-> {b}" for a, ds in deps.items() for b in ds
                    if a < b and b in deps and a in deps[b])
    assert not cycles, cycles


def test_files_stay_under_the_size_cap():
    big = [f"{p.relative_to(SRC.parent)}: {n} lines" for p in sorted(SRC.rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, big


def test_no_private_names_across_modules():
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adplg"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and node.module != name:
                    offenders.append(f"{name}: from {node.module} import {', '.join(private)}")
    assert not offenders, offenders


def test_records_are_keyword_only():
    """A dataclass with three or more fields is built with keywords (``AlertRules(on_threshold=...)``)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for deco in node.decorator_list:
                call = deco if isinstance(deco, ast.Call) else None
                target = call.func if call else deco
                if not (isinstance(target, ast.Name) and target.id == "dataclass"):
                    continue
                fields = [s for s in node.body if isinstance(s, ast.AnnAssign)
                          and not (isinstance(s.annotation, ast.Subscript)
                                   and getattr(s.annotation.value, "id", "") == "ClassVar")]
                kw_only = call is not None and any(k.arg == "kw_only" and getattr(k.value, "value", False)
                                                   for k in call.keywords)
                if len(fields) >= 3 and not kw_only:
                    offenders.append(f"{path.relative_to(SRC.parent)}: {node.name} ({len(fields)} fields)")
    assert not offenders, offenders


def test_import_config_does_not_import_torch():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import adplg.config"], capture_output=True,
                         text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "adplg.config" in imported
    assert not any(m == "torch" or m.startswith("torch.") for m in imported), "import adplg.config imports torch"


def test_package_root_is_lazy():
    code = "import sys, adplg; assert 'torch' not in sys.modules; adplg.load; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
