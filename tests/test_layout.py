"""The package's layout rules (issue 18): no import cycle among its modules (function-level imports
included), nothing imported from the repository's root scripts or the lab (studies/), and no module far
beyond 400 lines. Each rule is checked on the real source tree, so a change that breaks one fails here."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nsipf_torch"
ROOT_SCRIPTS = {"train", "simulate", "benchmark", "infer", "studies"}


def _modules() -> dict[str, set[str]]:
    """Each package module's name -> the package modules it imports (anywhere in the file)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = deps - {name}
    return graph


def test_no_import_cycle():
    graph = _modules()
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph[module] & graph.keys()):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == [], cycles
    assert len(graph) > 40  # the walk saw the package (a wrong path would pass vacuously)


def test_no_import_of_root_scripts_or_studies():
    offenders = {m: sorted(d.split(".")[0] for d in deps if d.split(".")[0] in ROOT_SCRIPTS)
                 for m, deps in _modules().items()}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_modules_stay_readable():
    sizes = {str(p.relative_to(PACKAGE)): p.read_text().count("\n") for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 420} == {}
