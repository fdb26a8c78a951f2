"""The house's floors, read from the code: no import circles, no import of a floor above.

    bench                                      the benchmarks (they may start the whole stack)
    stack                                      the local stack and the demo (starts everything)
    router_svc  feedback  workers  simulations services and tools, side by side
    bandit                                     the bandit core: policies, context, embedder
    common                                     settings, Kafka/Redis plumbing, data set format
    proto                                      the messages

A module may import its own package and the floors below it, nothing beside or above.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"proto": 0, "common": 1, "bandit": 2,
          "router_svc": 3, "feedback": 3, "workers": 3, "simulations": 3, "stack": 4, "bench": 5}


def modules() -> dict[str, Path]:
    out = {}
    for package in FLOORS:
        for path in (ROOT / package).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            out[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (every import statement, also inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_no_module_imports_a_floor_beside_or_above_its_own():
    wrong = []
    for m, targets in graph().items():
        mine = m.split(".")[0]
        for t in targets:
            theirs = t.split(".")[0]
            if theirs != mine and FLOORS[theirs] >= FLOORS[mine]:
                wrong.append(f"{m} -> {t}")
    assert wrong == [], "imports across or up the floors:\n" + "\n".join(sorted(wrong))


def test_the_core_imports_no_service_and_only_router_svc_imports_router_svc():
    g = graph()
    assert not [(m, t) for m, ts in g.items() if m.startswith("bandit") for t in ts
                if FLOORS[t.split(".")[0]] > FLOORS["common"] and not t.startswith("bandit")]
    assert not [(m, t) for m, ts in g.items() if not m.startswith("router_svc") for t in ts
                if t.startswith("router_svc")]


def test_no_import_circles():
    g = graph()
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done
    circles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(g[m]):
            if state.get(t) == 1:
                circles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert circles == [], "import circles:\n" + "\n".join(circles)


def test_no_module_over_400_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
