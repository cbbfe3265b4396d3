"""The walls between the services hold, and no import circle remains.

The services meet only through Redis streams and ``services/common``; the CLI side
(``services.cli``, ``services.asyncapi``, the benchmark harness) is the one face over all three.
The contracts live in pyproject.toml (``[tool.importlinter]``) and ``make lint`` runs them too;
this test makes CI fail when a wall is crossed, and shows that the check can fail.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "ingest, classify and notify never import each other KEPT" in result.stdout


def test_crossing_a_wall_is_reported(tmp_path: Path) -> None:
    """A copy of the package in which classify imports ingest breaks the independence contract."""
    shutil.copytree(ROOT / "services", tmp_path / "services", ignore=shutil.ignore_patterns("*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    crossing = tmp_path / "services" / "classify" / "crossing.py"
    crossing.write_text("from services.ingest import normalize  # noqa: F401\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "never import each other BROKEN" in result.stdout
    assert "services.classify.crossing -> services.ingest.normalize" in result.stdout


def strongly_connected(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[set[str]]:
    """Tarjan's algorithm over the graph's direct imports: every group of modules that import
    each other, directly or round a circle (groups of one are left out unless self-importing)."""
    modules = sorted(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        # Iterative depth-first search: (module, its remaining successors).
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.find_modules_directly_imported_by(node):
                    groups.append(group)

    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_no_import_circle_among_the_services_modules() -> None:
    # Every import counts: module level, inside functions and under TYPE_CHECKING alike.
    graph = grimp.build_graph("services", cache_dir=None)
    circles = strongly_connected(graph, graph.modules)
    assert circles == [], f"import circles: {circles}"


def test_the_circle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "e")]:
        graph.add_import(importer=importer, imported=imported)
    assert sorted(map(sorted, strongly_connected(graph, graph.modules))) == [
        ["a", "b", "c"],
        ["e"],
    ]


def _environment_reads(path: Path) -> list[str]:
    return _environment_reads_at(path, ROOT)


def _environment_reads_at(path: Path, root: Path) -> list[str]:
    """Every ``os.environ``/``os.getenv``/``environ`` use in a module that is not handing a
    copy of the environment on to a child process (``dict(os.environ)``, ``{**os.environ}``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names}
            if names & {"environ", "getenv", "environb", "getenvb"}:
                found.append(f"{path.relative_to(root)}:{node.lineno} from os import")
        if not (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in {"environ", "getenv", "environb", "getenvb"}
        ):
            continue
        parent = parents.get(node)
        handed_on = (
            isinstance(parent, ast.Call)
            and isinstance(parent.func, ast.Name)
            and parent.func.id == "dict"
            and parent.args == [node]
        ) or (isinstance(parent, ast.Dict) and None in parent.keys)
        # {k: v for k, v in os.environ.items() if ...}: a filtered copy for a child process.
        grand = parents.get(parent) if parent is not None else None
        handed_on = handed_on or (
            isinstance(parent, ast.Attribute)
            and parent.attr == "items"
            and isinstance(grand, ast.Call)
            and isinstance(parents.get(grand), ast.comprehension)
        )
        if not handed_on:
            found.append(f"{path.relative_to(root)}:{node.lineno} os.{node.attr}")
    return found


def test_settings_is_the_only_reader_of_the_environment() -> None:
    reads = [
        read
        for path in sorted((ROOT / "services").rglob("*.py"))
        if path != ROOT / "services" / "common" / "settings.py"
        for read in _environment_reads(path)
    ]
    assert reads == [], "read the environment in services/common/settings.py only: " + str(reads)


def test_the_environment_check_sees_a_read(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nchild = dict(os.environ)\nalso = {**os.environ, 'A': '1'}\n"
        "some = {k: v for k, v in os.environ.items() if k != 'A'}\n"
        "token = os.environ.get('TOPICWATCH_READ_TOKEN')\nother = os.getenv('X')\n"
    )
    found = [read.rsplit(":", 1)[-1] for read in _environment_reads_at(module, tmp_path)]
    assert sorted(found) == ["5 os.environ", "6 os.getenv"]


def _decoders_and_clocks(path: Path, root: Path = ROOT) -> list[str]:
    """``x.decode(...) if isinstance(x, bytes) else ...`` expressions and ``utcnow``
    definitions in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.IfExp)
            and isinstance(node.test, ast.Call)
            and isinstance(node.test.func, ast.Name)
            and node.test.func.id == "isinstance"
            and len(node.test.args) == 2
            and isinstance(node.test.args[1], ast.Name)
            and node.test.args[1].id == "bytes"
            and isinstance(node.body, ast.Call)
            and isinstance(node.body.func, ast.Attribute)
            and node.body.func.attr == "decode"
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno} bytes->str")
        if isinstance(node, ast.FunctionDef) and node.name == "utcnow":
            found.append(f"{path.relative_to(root)}:{node.lineno} utcnow")
    return found


def test_one_bytes_to_str_helper_and_one_utcnow() -> None:
    """Redis replies are decoded by ``streams.as_text`` and the time is ``models.utcnow``:
    copies had begun to differ (strict or lenient on bad UTF-8)."""
    found = [
        item
        for path in sorted((ROOT / "services").rglob("*.py"))
        for item in _decoders_and_clocks(path)
    ]
    utcnows = [f.split(":")[0] for f in found if f.endswith(" utcnow")]
    decoders = [f for f in found if f.endswith(" bytes->str")]
    assert utcnows == ["services/common/models.py"], found
    assert decoders == [], f"use services.common.streams.as_text: {decoders}"


def test_the_copy_finder_finds_copies(tmp_path: Path) -> None:
    module = tmp_path / "services" / "m.py"
    module.parent.mkdir()
    module.write_text(
        "def utcnow():\n    return 0\n\n"
        "def text(v):\n    return v.decode() if isinstance(v, bytes) else str(v)\n"
    )
    found = [f.split(" ", 1)[1] for f in _decoders_and_clocks(module, tmp_path)]
    assert sorted(found) == ["bytes->str", "utcnow"]


#: Where a Redis client or FastStream broker may be built: the one factory (cluster mode is
#: decided there), the fixtures' own server and cluster helpers (they talk to one node), and
#: the WAIT barrier (replication.py: WAIT counts replicas of one connection, so it needs a
#: plain connection to each master of the cluster client it was given).
CONNECTION_BUILDERS = {"connections.py", "redis_server.py", "redis_cluster.py", "replication.py"}
_CLIENT_CALLS = ("from_url", "Redis", "RedisCluster", "RedisBroker", "RedisClusterBroker")


def client_constructions(path: Path) -> list[str]:
    """``Redis.from_url(...)``, ``Redis(...)``, ``RedisBroker(...)``... calls in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _CLIENT_CALLS:
                found.append(f"{node.lineno} {name}")
    return found


def test_services_open_redis_only_through_the_connection_factory() -> None:
    """Cluster mode works only if every service builds its clients in connections.py."""
    offenders = []
    for package in ("common", "ingest", "classify", "notify", "harness"):
        for path in sorted((ROOT / "services" / package).rglob("*.py")):
            if path.name in CONNECTION_BUILDERS:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{c}" for c in client_constructions(path)]
    assert offenders == []


def test_the_client_check_sees_a_construction(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import redis\nfrom faststream.redis import RedisBroker\n"
        "a = redis.asyncio.Redis.from_url('redis://x')\nb = RedisBroker('redis://x')\n"
    )
    assert client_constructions(module) == ["3 from_url", "4 RedisBroker"]
