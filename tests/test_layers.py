"""The agents package is layered: no module imports, even lazily inside a function, one that
imports it back (chat encoding and checkpoint loading below the policies, `load_policy` above)."""

from __future__ import annotations

import ast
from pathlib import Path

AGENTS = Path(__file__).resolve().parents[1] / "agents"


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "agents":
            out |= {f"agents.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agents."):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("agents.")}
    return out


def test_the_agents_modules_import_each_other_without_a_cycle():
    modules = {f"agents.{p.stem}": p for p in AGENTS.glob("*.py") if p.stem != "__init__"}
    graph = {m: {d for d in imports_of(p) if d in modules and d != m} for m, p in modules.items()}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m not in done:
            for d in sorted(graph[m]):
                visit(d, path + [m])
            done.add(m)

    for m in sorted(graph):
        visit(m, [])
    assert "agents.loading" not in graph["agents.hf"] | graph["agents.chat_encoding"]
