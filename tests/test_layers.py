"""Layers point one way (docs/DESIGN.md, "Layers"): a module imports only from its own layer or those below it."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# top to bottom; a module's layer is the first whose prefix matches its dotted name
LAYERS = [
    ("studies", ("prerec_pyro.study", "prerec_pyro.report", "prerec_pyro.ablation_tables", "prerec_pyro.figures",
                 "prerec_pyro.baseline_runs",
                 "prerec_pyro.run_flags")),
    ("api", ("prerec_pyro.api", "prerec_pyro.serve", "prerec_pyro")),  # the package root lazily re-exports the API
    ("inference", ("prerec_pyro.inference",)),
    ("models and baselines", ("prerec_pyro.models", "prerec_pyro.baselines", "prerec_pyro.pipeline")),
    ("foundations", ("prerec_pyro.data", "prerec_pyro.text", "prerec_pyro.text_space", "prerec_pyro.popularity",
                     "prerec_pyro.nets", "prerec_pyro.metrics", "prerec_pyro.evaluate", "prerec_pyro.training",
                     "prerec_pyro.distributed", "prerec_pyro.calibration", "prerec_pyro.io", "prerec_pyro.cli",
                     "prerec_pyro.progress")),
]
FOLDERS = {"prerec_pyro": REPO / "prerec_pyro", "prerec_pyro.models": REPO / "models",
           "prerec_pyro.inference": REPO / "inference"}


def layer_of(name: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or (prefix != "prerec_pyro" and name.startswith(prefix + "."))]
    assert matches, f"{name} belongs to no layer: add it to LAYERS"
    return max(matches)[1]  # the longest prefix decides


def modules():
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "prerec_pyro" and parts[0] in ("models", "inference"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            yield name, path


def imported(name: str, path: Path) -> set[str]:
    out, package = set(), name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            out |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in out if m.startswith("prerec_pyro")}


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda value: str(value))
def test_no_import_points_up(name, path):
    own = layer_of(name)
    up = sorted(m for m in imported(name, path) if _known(m) and layer_of(m) < own)
    assert not up, f"{name} ({LAYERS[own][0]}) imports from a layer above it: {up}"


def _known(module: str) -> bool:
    """Whether ``module`` is a module of the package (not a name imported from one)."""
    parts = module.split(".")
    for package, folder in FOLDERS.items():
        prefix = package.split(".")
        if parts[: len(prefix)] == prefix:
            rest = parts[len(prefix):]
            if not rest or (folder.joinpath(*rest).with_suffix(".py").exists() or folder.joinpath(*rest).is_dir()):
                return True
    return False


def test_the_check_sees_an_upward_import(tmp_path):
    fake = tmp_path / "evaluate.py"
    fake.write_text("from prerec_pyro.inference.zero_shot import score_target\n")
    assert layer_of("prerec_pyro.inference.zero_shot") < layer_of("prerec_pyro.evaluate")
    assert "prerec_pyro.inference.zero_shot" in imported("prerec_pyro.evaluate", fake)


ENTRY_POINTS = sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "benchmarks").glob("*.py"))
SCRIPT_NAMES = {path.stem for path in (REPO / "scripts").glob("*.py")}


@pytest.mark.parametrize("path", ENTRY_POINTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_script_imports_a_script(path):
    """Scripts are flags -> config -> library calls: none loads another script (``load_script``) or imports one."""
    tree = ast.parse(path.read_text())
    loads = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", getattr(node.func, "id", None)) == "load_script"]
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = {alias.name.split(".")[0] for node in imports if isinstance(node, ast.Import) for alias in node.names}
    names |= {(node.module or "").split(".")[0] for node in imports if isinstance(node, ast.ImportFrom)}
    assert not loads, f"{path.name} loads a script (line {loads[0]})"
    assert not names & SCRIPT_NAMES, f"{path.name} imports the script(s) {sorted(names & SCRIPT_NAMES)}"


def test_inference_reads_only_the_rules_of_the_baselines():
    """The harness scores the training-free rules beside PreRec; no inference module reaches the baselines'
    training (their runs sit with the studies)."""
    for name, path in modules():
        if not name.startswith("prerec_pyro.inference"):
            continue
        reached = {m.removeprefix("prerec_pyro.") for m in imported(name, path)
                   if m.startswith(("prerec_pyro.baselines", "prerec_pyro.baseline_"))}
        modules_reached = {m for m in reached if m in ("baselines", "baseline_runs") or m.count(".") == 1}
        assert modules_reached <= {"baselines.simple"}, (name, sorted(modules_reached))
