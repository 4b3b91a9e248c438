"""The layers import one way: tasks -> apps -> engines, settings import no app (the contracts
are in pyproject.toml under [tool.importlinter])."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_web_worker_loads_no_model_libraries(settings):
    """A web worker imports Django, the apps and the URLs, and serves the API and the admin; the
    libraries the models run on (scikit-learn, SciPy, torch, transformers) are the triage pool's.
    Loaded in the web they cost each new worker about a second of CPU and 80 MB."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="mailscore.settings.test", REDIS_URL=settings.REDIS_URL,
               DATABASE_URL=os.environ.get("DATABASE_URL", ""))  # fmt: skip
    probe = (
        "import sys, mailscore.wsgi\n"
        "from django.urls import get_resolver\n"
        "get_resolver().url_patterns\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-2000:]
