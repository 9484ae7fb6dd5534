"""Fixtures for the deployment-file tests: docker-compose.yml as compose sees it (YAML with .env.example
interpolated), the Dockerfiles parsed into stages, the services' Settings and their local-package closures.
No Docker needed: these read the files."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("gateway", "predictor", "sampler", "trainer")
# The compose stack's own services and one-shot jobs, by the Lyceum image each runs.
IMAGE = re.compile(r"/(?P<service>gateway|predictor|sampler|trainer):")
# $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, $NAME: compose's interpolation syntax.
VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


# ---- compose ----


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file; comments and blank lines skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def variable_references(value: Any) -> list[tuple[str, str | None]]:
    """(name, inline default or None) of every variable in a parsed compose document's values."""
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in variable_references(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in variable_references(v)]
    if not isinstance(value, str):
        return []
    return [
        (m["name"] or m["bare"], m["default"] if m["op"] else None)
        for m in VARIABLE.finditer(value)
        if not m["escaped"]
    ]


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation over a parsed document: strings substituted, `$$` unescaped."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["name"] or m["bare"]
        current = env.get(name)
        if m["op"] == ":-" and not current:
            return m["default"]
        if m["op"] == "-" and current is None:
            return m["default"]
        return current or ""

    return VARIABLE.sub(substitute, value)


@dataclass(frozen=True)
class ComposeService:
    name: str
    spec: dict[str, Any]

    @property
    def lyceum_service(self) -> str | None:
        """gateway | predictor | sampler | trainer for a Lyceum image, else None (postgres, grafana, ...)."""
        m = IMAGE.search(self.spec.get("image", ""))
        return m["service"] if m else None

    @property
    def one_shot(self) -> bool:
        return self.spec.get("restart") == "no"

    @property
    def environment(self) -> dict[str, str]:
        env = self.spec.get("environment", {})
        assert isinstance(env, dict), f"{self.name}: write environment as a mapping"
        return {k: str(v) for k, v in env.items()}

    @property
    def healthcheck(self) -> dict[str, Any] | None:
        check = self.spec.get("healthcheck")
        return None if not check or check.get("disable") else check

    @property
    def runs_service(self) -> bool:
        """Whether the container runs the image's own service (not e.g. migrations with the gateway image)."""
        return self.lyceum_service is not None and "entrypoint" not in self.spec

    def settings(self, settings_classes: dict[str, type[BaseSettings]]) -> BaseSettings:
        """The service's Settings as this container's environment sets them (the image's ENV aside)."""
        svc = self.lyceum_service
        assert svc is not None
        prefix = f"LYCEUM_{svc.upper()}_"
        given = {
            k.removeprefix(prefix).lower(): v for k, v in self.environment.items() if k.startswith(prefix)
        }
        return settings_classes[svc](_env_file=None, **given)


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return read_env_file(ROOT / ".env.example")


@pytest.fixture(scope="session")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="session")
def compose(compose_text: str, env_example: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml parsed, anchors resolved, interpolated with the .env.example values."""
    return interpolate(yaml.safe_load(compose_text), env_example)


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, ComposeService]:
    return {name: ComposeService(name, spec) for name, spec in compose["services"].items()}


@pytest.fixture(scope="session")
def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())


@pytest.fixture
def settings_classes(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[BaseSettings]]:
    """Each service's Settings class, with this process's LYCEUM_* variables out of the way."""
    import os

    for key in list(os.environ):
        if key.startswith("LYCEUM_"):
            monkeypatch.delenv(key)
    return {svc: importlib.import_module(f"lyceum_{svc}.config").Settings for svc in SERVICES}


# ---- Dockerfiles ----


@dataclass
class Instruction:
    keyword: str
    args: str

    def json(self) -> Any:
        return json.loads(self.args)

    def words(self) -> list[str]:
        return shlex.split(self.args)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            words = instruction.words()
            if "=" in words[0]:
                values.update(word.split("=", 1) for word in words)
            else:
                values[words[0]] = " ".join(words[1:])
        return values

    def copies(self) -> list[tuple[dict[str, str], list[str], str]]:
        """(flags, sources, destination) of each COPY."""
        result = []
        for instruction in self.all("COPY"):
            words = instruction.words()
            flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            result.append((flags, paths[:-1], paths[-1]))
        return result


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, text: str, **build_args: str) -> str:
        """`text` with ${ARG} references replaced by build args, else the global ARG defaults."""
        values = {k: v or "" for k, v in self.global_args.items()} | build_args
        return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m[1]], text)

    def root_image(self, stage: Stage, **build_args: str) -> str:
        """The image a stage finally builds on, following FROM <stage> chains."""
        base = self.resolve(stage.base, **build_args)
        names = {s.name: s for s in self.stages if s.name}
        return self.root_image(names[base], **build_args) if base in names else base


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions with line continuations joined and comments dropped, grouped by FROM into stages."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"

    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{path}: only ARG may come before the first FROM, not {keyword}"
            arg_name, sep, default = args.partition("=")
            global_args[arg_name] = default if sep else None
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="session")
def dockerfiles() -> dict[str, Dockerfile]:
    return {svc: parse_dockerfile(ROOT / "services" / svc / "Dockerfile") for svc in SERVICES}


# ---- packages ----


def local_packages() -> dict[str, Path]:
    """Canonical project name -> folder (relative to the repo root) of every lib and service."""
    packages = {}
    for pyproject in sorted([*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]):
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        packages[canonicalize_name(name)] = pyproject.parent.relative_to(ROOT)
    return packages


def dependencies(folder: Path) -> list[Requirement]:
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project.get("dependencies", [])]


def local_closure(service: str) -> set[Path]:
    """The folders of the service and every local package it depends on, transitively."""
    packages = local_packages()
    todo, seen = [Path("services") / service], set()
    while todo:
        folder = todo.pop()
        if folder in seen:
            continue
        seen.add(folder)
        todo += [packages[n] for r in dependencies(folder) if (n := canonicalize_name(r.name)) in packages]
    return seen


@pytest.fixture(scope="session")
def compose_variables(compose_text: str) -> list[tuple[str, str | None]]:
    """(name, inline default) of every ${VAR} docker-compose.yml interpolates."""
    return variable_references(yaml.safe_load(compose_text))


@pytest.fixture(scope="session")
def closures() -> dict[str, set[Path]]:
    """Service -> the folders of its local-package closure, from the pyproject files."""
    return {svc: local_closure(svc) for svc in SERVICES}


@pytest.fixture(scope="session")
def packages() -> dict[str, Path]:
    return local_packages()
