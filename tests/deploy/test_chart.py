"""The Helm chart, rendered by the real Helm engine and checked object by object.

deploy/helm/mailscore is rendered with its defaults and with the staging and production values,
linted, and every object validated against the Kubernetes schemas; the custom resources (KEDA,
Prometheus operator), which those schemas do not know, are checked field by field. Then the
assertions say what the chart promises: a pool per queue with the right command, one autoscaler
per pool, probes, a locked-down security context, the migration hook, the GPU pool, backups.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from django.conf import settings
from django.db import connection

from tasks.queues import CeleryQueue

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "mailscore"
ENVIRONMENTS = {
    "default": None,
    "staging": ROOT / "deploy" / "helm" / "values-staging.yaml",
    "production": ROOT / "deploy" / "helm" / "values-production.yaml",
}
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest with schemas.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
# Kinds the Kubernetes schemas do not have: checked by the tests below, field by field.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
POD_KINDS = {"Deployment", "Job", "CronJob"}


def environment_values(environment: str) -> dict:
    path = ENVIRONMENTS[environment]
    return {} if path is None else helm.values_from_yaml(path.read_text())


def render(values: dict | None = None) -> list[dict]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name="mailscore", namespace="mailscore")
    return [
        document
        for manifest in manifests.values()
        for document in yaml.safe_load_all(manifest)
        if document
    ]


def merged(base: dict, override: dict) -> dict:
    """Values as Helm layers two files: maps merge key by key, anything else is replaced."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@pytest.fixture(scope="module", params=list(ENVIRONMENTS))
def environment(request) -> tuple[str, list[dict]]:
    return request.param, render(environment_values(request.param))


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return render(environment_values("production"))


@pytest.fixture(scope="module")
def defaults() -> list[dict]:
    return render()


def objects(rendered: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered if o["kind"] == kind}


def one(rendered: list[dict], kind: str, name: str) -> dict:
    found = objects(rendered, kind)
    assert name in found, f"no {kind} {name}; there are {sorted(found)}"
    return found[name]


def workers(rendered: list[dict]) -> dict[str, dict]:
    """Worker Deployments by pool name."""
    return {
        d["metadata"]["labels"]["mailscore.io/worker-pool"]: d
        for d in objects(rendered, "Deployment").values()
        if "mailscore.io/worker-pool" in d["metadata"]["labels"]
    }


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- Helm's own checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_the_chart_lints_clean(name):
    report = helm.lint(CHART, environment_values(name), strict=True)
    # Severity 1 is information ("icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


def test_every_object_is_valid_kubernetes(environment):
    name, rendered = environment
    kinds = {o["kind"] for o in rendered}
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
        "CronJob",
        "ConfigMap",
    } <= kinds
    for obj in rendered:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{name}: {obj['kind']} {obj['metadata']['name']} on {version}: {error}"
                )


def test_a_wrong_value_is_refused_by_the_schema():
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match="replicas"):
            chart.render({"web": {"replicas": "three"}}, name="mailscore")
        with pytest.raises(helm.HelmValuesError, match="queues"):
            chart.render({"workers": {"pools": {"triage": {"queues": ["email"]}}}}, name="m")
        with pytest.raises(helm.HelmValuesError, match="replica"):
            chart.render({"replica": 3}, name="mailscore")
    report = helm.lint(CHART, {"backup": {"keep": -1}})
    assert any("keep" in m["error"] for m in report["messages"] if m["severity"] == 3)


def test_inconsistent_values_fail_with_a_message_that_says_what_to_set():
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError, match="keda.redis.address"):
            chart.render({"keda": {"enabled": True}}, name="mailscore")
        with pytest.raises(helm.HelmError, match="maxReplicas"):
            chart.render(
                {
                    "workers": {
                        "pools": {"verify": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}
                    }
                },
                name="mailscore",
            )
        with pytest.raises(helm.HelmError, match="secrets.values.DATABASE_URL"):
            chart.render({"secrets": {"existingSecret": ""}}, name="mailscore")


# --- Worker pools and their autoscalers ---------------------------------------------------------


def test_every_queue_has_a_pool_with_the_worker_command(environment):
    name, rendered = environment
    pools = workers(rendered)
    consumed = set()
    for pool, deployment in pools.items():
        (container,) = pod_spec(deployment)["containers"]
        command = container["command"]
        assert command[:4] == ["celery", "-A", "mailscore", "worker"]
        queues = command[command.index("-Q") + 1].split(",")
        assert set(queues) <= {q.value for q in CeleryQueue}
        consumed.update(queues)
        assert command[command.index("-n") + 1] == f"{pool}@%h"
        worker_pool = command[command.index("--pool") + 1]
        concurrency = int(command[command.index("--concurrency") + 1])
        if set(queues) & {CeleryQueue.VERIFY, CeleryQueue.WEBHOOKS}:
            # Network-bound: many threads waiting on remote servers.
            assert (worker_pool, concurrency) == ("threads", 8)
        if set(queues) & {CeleryQueue.TRIAGE, CeleryQueue.GENERATE}:
            # The models load once in the worker's parent, before it forks.
            assert env_of(container)["MAILSCORE_PRELOAD_MODELS"]["value"] == "1"
        assert container["ports"] == [{"name": "metrics", "containerPort": 9100}]
    assert consumed == {q.value for q in CeleryQueue}, f"{name}: a queue has no worker pool"


def test_a_pool_has_one_autoscaler_keda_or_hpa_never_both(environment):
    name, rendered = environment
    values = environment_values(name)
    for keda in (False, True):
        switched = merged(values, {"keda": {"enabled": keda, "redis": {"address": "redis:6379"}}})
        rendered = render(switched)
        deployments = objects(rendered, "Deployment")
        scaled = {
            o["spec"]["scaleTargetRef"]["name"] for o in objects(rendered, "ScaledObject").values()
        }
        hpas = [
            o["spec"]["scaleTargetRef"]["name"]
            for o in objects(rendered, "HorizontalPodAutoscaler").values()
        ]
        assert scaled.isdisjoint(hpas), f"{name}: a pool with both a ScaledObject and an HPA"
        assert len(hpas) == len(set(hpas))
        with helm.Chart.load(CHART) as chart:
            pools = chart.merge_values(switched)["workers"]["pools"]
        for pool, deployment in workers(rendered).items():
            target = deployment["metadata"]["name"]
            if not pools[pool]["autoscaling"]["enabled"]:
                assert target not in scaled and target not in hpas
                assert deployment["spec"]["replicas"] >= 1
                continue
            # The autoscaler owns the replica count.
            assert "replicas" not in deployment["spec"]
            if keda:
                assert target in scaled and target not in hpas
            else:
                assert target in hpas and not scaled
        for target in scaled | set(hpas):
            assert target in deployments


def test_keda_scales_each_pool_on_its_queues_redis_lists(production):
    deployments = workers(production)
    scaled = objects(production, "ScaledObject")
    assert scaled, "production scales its workers with KEDA"
    for obj in scaled.values():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        target = obj["spec"]["scaleTargetRef"]["name"]
        (deployment,) = [d for d in deployments.values() if d["metadata"]["name"] == target]
        command = pod_spec(deployment)["containers"][0]["command"]
        queues = command[command.index("-Q") + 1].split(",")
        spec = obj["spec"]
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        triggers = spec["triggers"]
        # Celery's Redis transport keeps each queue's tasks in a list named for the queue.
        assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(queues)
        for trigger in triggers:
            assert trigger["type"] == "redis"
            assert re.fullmatch(r"[\w.-]+:\d+", trigger["metadata"]["address"])
            # KEDA takes its trigger metadata as strings.
            assert all(isinstance(v, str) for v in trigger["metadata"].values())
            assert int(trigger["metadata"]["listLength"]) >= 1
            assert trigger["authenticationRef"]["name"] == "mailscore-redis"
    auth = one(production, "TriggerAuthentication", "mailscore-redis")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "mailscore", "key": "REDIS_PASSWORD"}
    ]


@pytest.mark.django_db
def test_a_worker_is_given_longer_to_stop_than_its_longest_task(environment):
    from mailscore.celery import app

    app.loader.import_default_modules()
    from tasks.queues import TASK_QUEUES

    longest: dict[str, int] = {}
    for task_name, queue in TASK_QUEUES.items():
        task = app.tasks[task_name]
        limit = task.time_limit or app.conf.task_time_limit
        longest[queue.value] = max(longest.get(queue.value, 0), limit)
    # The numbers docs/deploy.md and values.yaml state.
    assert longest == {
        "triage": 3600,
        "generate": 1860,
        "verify": 300,
        "maintenance": 300,
        "webhooks": 45,
    }
    name, rendered = environment
    for pool, deployment in workers(rendered).items():
        command = pod_spec(deployment)["containers"][0]["command"]
        queues = command[command.index("-Q") + 1].split(",")
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace > max(longest[q] for q in queues), f"{name}: pool {pool}"


def test_the_gpu_pool_runs_only_in_production(defaults, production):
    assert "gpu" not in workers(defaults)
    pools = workers(production)
    assert "generate" not in pools, "the GPU pool takes the CPU generate pool's place"
    spec = pod_spec(pools["gpu"])
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert env_of(container)["MAILSCORE_DEVICE"]["value"] == "cuda"
    command = container["command"]
    # CUDA does not survive a fork: one process, the models loaded in it.
    assert command[command.index("--pool") + 1] == "solo"
    assert command[command.index("-Q") + 1] == "generate"
    assert container["image"] == "registry.example.com/mailscore:0.1.0-cuda"


# --- Web, beat, Flower, the migration hook -------------------------------------------------------


def test_web_probes_service_ingress_and_disruption_budget(environment):
    name, rendered = environment
    web = one(rendered, "Deployment", "mailscore-web")
    (container,) = pod_spec(web)["containers"]
    assert container["command"][:5] == [
        "gunicorn",
        "mailscore.wsgi:application",
        "-c",
        "mailscore/gunicorn.conf.py",
        "--bind",
    ]
    assert container["command"][5] == "0.0.0.0:8000"
    assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    env = env_of(container)
    # Probes and Prometheus call the pod by its IP: it must be an allowed host.
    names = [item["name"] for item in container["env"]]
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")
    allowed = env["DJANGO_ALLOWED_HOSTS"]["value"].split(",")
    assert "$(POD_IP)" in allowed
    ingress = one(rendered, "Ingress", "mailscore-web")
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in allowed
        backend = rule["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": "mailscore-web", "port": {"name": "http"}}
    service = one(rendered, "Service", "mailscore-web")
    assert selects(service["spec"]["selector"], pod_labels(web))
    pdb = one(rendered, "PodDisruptionBudget", "mailscore-web")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(web))
    replicas = (
        web["spec"].get("replicas")
        or one(rendered, "HorizontalPodAutoscaler", "mailscore-web")["spec"]["minReplicas"]
    )
    # The budget lets a drain proceed one pod at a time and never blocks it outright.
    assert pdb["spec"]["maxUnavailable"] == 1
    if name == "production":
        assert replicas >= 3


def test_beat_is_one_replica_recreated(environment):
    _, rendered = environment
    beat = one(rendered, "Deployment", "mailscore-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    command = pod_spec(beat)["containers"][0]["command"]
    assert command[:4] == ["celery", "-A", "mailscore", "beat"]
    # The root filesystem is read-only: the schedule's state lives in the /tmp emptyDir.
    assert command[command.index("--schedule") + 1].startswith("/tmp/")


def test_flower_has_basic_auth_from_the_secret(environment):
    _, rendered = environment
    flower = one(rendered, "Deployment", "mailscore-flower")
    (container,) = pod_spec(flower)["containers"]
    assert container["command"][:4] == ["celery", "-A", "mailscore", "flower"]
    assert "--port=5555" in container["command"]
    auth = env_of(container)["FLOWER_BASIC_AUTH"]
    assert auth["valueFrom"]["secretKeyRef"] == {"name": "mailscore", "key": "FLOWER_BASIC_AUTH"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "flower"}
    # Only Flower gets its password.
    for deployment in objects(rendered, "Deployment").values():
        if deployment is not flower:
            for other in pod_spec(deployment)["containers"]:
                assert "FLOWER_BASIC_AUTH" not in env_of(other)


def test_migrations_run_as_a_hook_before_install_and_upgrade(environment):
    _, rendered = environment
    job = one(rendered, "Job", "mailscore-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    # Hooks run before the release's own objects exist on a first install: no ConfigMap or
    # chart-made service account to lean on, the settings are inline.
    assert "envFrom" not in container and "serviceAccountName" not in spec
    env = env_of(container)
    assert env["DJANGO_SETTINGS_MODULE"]["value"] == "mailscore.settings.production"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    configmap = one(rendered, "ConfigMap", "mailscore-config")
    assert {k: env[k]["value"] for k in configmap["data"]} == configmap["data"]


def test_a_chart_made_secret_exists_before_the_migration_hook():
    rendered = render(
        {
            "secrets": {
                "existingSecret": "",
                "values": {
                    "DATABASE_URL": "postgres://u:p@db/mailscore",
                    "REDIS_URL": "redis://redis:6379/0",
                    "DJANGO_SECRET_KEY": "k" * 50,
                    "FLOWER_BASIC_AUTH": "ops:secret",
                },
            }
        }
    )
    secret = one(rendered, "Secret", "mailscore-secrets")
    job = one(rendered, "Job", "mailscore-migrate")
    assert "pre-install" in secret["metadata"]["annotations"]["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert (
        env_of(pod_spec(job)["containers"][0])["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == "mailscore-secrets"
    )


def test_settings_come_from_the_configmap_and_secrets_from_the_secret(environment):
    name, rendered = environment
    configmap = one(rendered, "ConfigMap", "mailscore-config")["data"]
    assert configmap["DJANGO_SETTINGS_MODULE"] == "mailscore.settings.production"
    assert configmap["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert configmap["MAILSCORE_METRICS_PORT"] == "9100"
    assert configmap["MAILSCORE_LOG_FORMAT"] == "json"
    assert not {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "FLOWER_BASIC_AUTH"} & set(
        configmap
    )
    if name != "default":
        assert configmap["MAILSCORE_HELO_HOSTNAME"] and configmap["MAILSCORE_MAIL_FROM"]
    assert not objects(rendered, "Secret"), "the Secret is created by the operator"
    for deployment in objects(rendered, "Deployment").values():
        (container,) = pod_spec(deployment)["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "mailscore-config"}}]
        env = env_of(container)
        for key in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"):
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "mailscore", "key": key}


# --- Security ------------------------------------------------------------------------------------


def test_every_container_runs_non_root_on_a_read_only_filesystem(environment):
    name, rendered = environment
    pods = [o for o in rendered if o["kind"] in POD_KINDS]
    assert len(pods) >= 8
    for obj in pods:
        spec = pod_spec(obj)
        where = f"{name}: {obj['kind']} {obj['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["enableServiceLinks"] is False, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            assert "emptyDir" in mounts["/tmp"], where
            if container["image"].startswith(("mailscore:", "registry.example.com/mailscore:")):
                # prometheus_client's multiprocess files, fresh for every pod.
                assert "emptyDir" in mounts["/tmp/prometheus"], where
            assert container["resources"]["requests"] and container["resources"]["limits"], where


def test_network_policies_admit_only_the_served_ports(environment):
    name, rendered = environment
    policies = objects(rendered, "NetworkPolicy")
    pods = [o for o in rendered if o["kind"] in POD_KINDS]
    deny = policies["mailscore-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    for obj in pods:
        assert selects(deny["podSelector"]["matchLabels"], pod_labels(obj))
    for policy_name, policy in policies.items():
        if policy_name == "mailscore-deny-ingress":
            continue
        selected = [
            o for o in pods if selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(o))
        ]
        assert selected, f"{policy_name} selects no pod"
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                for obj in selected:
                    ports = {
                        p["name"] for c in pod_spec(obj)["containers"] for p in c.get("ports", [])
                    }
                    assert port["port"] in ports, f"{policy_name}: {obj['metadata']['name']}"
    if name == "production":
        (web_rule,) = policies["mailscore-web"]["spec"]["ingress"]
        sources = [
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in web_rule["from"]
        ]
        assert sources == ["ingress-nginx", "monitoring"]


# --- Monitoring ----------------------------------------------------------------------------------


def test_service_monitors_scrape_web_workers_and_flower(production, defaults):
    assert not objects(defaults, "ServiceMonitor") and not objects(defaults, "PrometheusRule")
    services = objects(production, "Service")
    monitors = objects(production, "ServiceMonitor")
    assert set(monitors) == {"mailscore-web", "mailscore-worker-metrics", "mailscore-flower"}
    for monitor in monitors.values():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
        matched = [
            s
            for s in services.values()
            if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert len(matched) == 1, monitor["metadata"]["name"]
        assert endpoint["port"] in {p["name"] for p in matched[0]["spec"]["ports"]}
    worker_service = services["mailscore-worker-metrics"]["spec"]
    for deployment in workers(production).values():
        assert selects(worker_service["selector"], pod_labels(deployment))


def test_alert_rules_and_dashboard_come_from_the_files(production):
    rules = one(production, "PrometheusRule", "mailscore")
    assert rules["apiVersion"] == "monitoring.coreos.com/v1"
    expected = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rules["spec"]["groups"] == expected["groups"]
    for group in rules["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert rule.get("alert") or rule.get("record")
            assert rule["expr"]
    dashboard = one(production, "ConfigMap", "mailscore-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = dashboard["data"]["mailscore.json"]
    assert json.loads(text) == json.loads((CHART / "files" / "dashboard.json").read_text())


# --- Backups -------------------------------------------------------------------------------------


def test_backups_run_hourly_to_a_volume_or_a_bucket(defaults, production):
    for rendered, destination in ((defaults, "pvc"), (production, "s3")):
        cronjob = one(rendered, "CronJob", "mailscore-backup")
        assert cronjob["spec"]["schedule"] == "0 * * * *"
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        spec = pod_spec(cronjob)
        dump = (spec.get("initContainers") or spec["containers"])[0]
        assert dump["image"] == "postgres:17"
        assert "pg_dump --format=custom" in dump["args"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        if destination == "pvc":
            claim = volumes["backups"]["persistentVolumeClaim"]["claimName"]
            pvc = one(rendered, "PersistentVolumeClaim", claim)
            assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        else:
            (upload,) = spec["containers"]
            env = env_of(upload)
            assert env["S3_BUCKET"]["value"] == "example-mailscore-backups"
            assert env["KEEP"]["value"] == "168"
            assert upload["envFrom"] == [{"secretRef": {"name": "mailscore-backup-s3"}}]
            assert "aws $endpoint s3 cp" in upload["args"][0]


@pytest.mark.django_db
def test_the_backup_script_dumps_the_database_and_keeps_the_newest(defaults, tmp_path):
    """The CronJob's own script, run here against the test database with PostgreSQL's tools."""
    pg_dump = shutil.which("pg_dump", path=_pg_bin())
    assert pg_dump, "pg_dump is part of the embedded PostgreSQL"
    (container,) = pod_spec(one(defaults, "CronJob", "mailscore-backup"))["containers"]
    script = container["args"][0]
    backups = tmp_path / "backups"
    backups.mkdir()
    older = [f"mailscore-20250101T0{hour}0000Z.dump" for hour in range(3)]
    for name in older:
        (backups / name).write_bytes(b"older")
    (backups / "unrelated.txt").write_text("left alone")
    database = connection.settings_dict
    # The test database, on the server of DATABASE_URL.
    url = urlunsplit(urlsplit(settings.DATABASE_URL)._replace(path=f"/{database['NAME']}"))
    env = {
        "PATH": f"{Path(pg_dump).parent}:{os.environ['PATH']}",
        "DATABASE_URL": url,
        "BACKUP_DIR": str(backups),
        "KEEP": "2",
    }
    result = subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    left = sorted(p.name for p in backups.iterdir())
    fresh = [n for n in left if n.endswith(".dump") and n not in older]
    assert len(fresh) == 1 and re.fullmatch(r"mailscore-\d{8}T\d{6}Z\.dump", fresh[0])
    # The newest two kept (the fresh dump and the newest older one), other files left alone.
    assert left == sorted([*fresh, older[-1], "unrelated.txt"])
    listing = subprocess.run(
        [str(Path(pg_dump).parent / "pg_restore"), "--list", str(backups / fresh[0])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "TABLE public django_migrations" in listing.stdout


def _pg_bin() -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin")
