"""deploy/: Prometheus config and alerts pass promtool, the KubeRay manifests carry what genint's
placement relies on, and every metric the alerts and dashboard query is one genint exports."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cluster.config import load_config
from cluster.metrics import job_metrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
KUBERAY = DEPLOY / "kuberay"
DASHBOARD = DEPLOY / "grafana" / "genint-dashboard.json"
PAPER_CONFIG = DEPLOY.parent / "configs" / "imagenet-genint.yaml"

# Sample names a metric family of each type exposes (prometheus-client's exposition).
_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}
_METRIC_NAME = re.compile(r"\bgenint_[A-Za-z0-9_]+")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    # Missing promtool is a broken environment (make test installs Debian's prometheus), not a skip.
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (make prometheus)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)


def _exported_names() -> set[str]:
    names = set()
    for family in job_metrics("x").registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def _raycluster() -> dict:
    docs = list(yaml.safe_load_all((KUBERAY / "raycluster.yaml").read_text()))
    (cluster,) = [doc for doc in docs if doc["kind"] == "RayCluster"]
    return cluster


def _groups() -> dict[str, dict]:
    return {group["groupName"]: group for group in _raycluster()["spec"]["workerGroupSpecs"]}


def _custom_resources(group: dict) -> dict[str, float]:
    # KubeRay's form: a YAML string holding a double-quoted JSON object, passed to `ray start --resources`.
    quoted = group["rayStartParams"]["resources"]
    assert quoted.startswith('"') and quoted.endswith('"'), quoted
    return json.loads(quoted[1:-1].replace('\\"', '"'))


def _pod_containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


@pytest.mark.parametrize("args", [("check", "config", str(PROMETHEUS / "prometheus.yml")),
                                  ("check", "rules", str(PROMETHEUS / "alerts.yml")),
                                  ("test", "rules", str(PROMETHEUS / "alerts_test.yml"))],
                         ids=["check-config", "check-rules", "test-rules"])
def test_promtool_accepts(args):
    result = _promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    # The check above could only pass vacuously if promtool accepted anything.
    broken = tmp_path / "alerts.yml"
    broken.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(genint_loss[5m]\n")
    assert _promtool("check", "rules", str(broken)).returncode != 0


def test_scrape_config_keeps_genint_job_label_and_reads_ray_discovery():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["genint"]["honor_labels"] is True
    ray_files = [path for sd in jobs["ray"]["file_sd_configs"] for path in sd["files"]]
    assert ray_files == ["/tmp/ray/prom_metrics_service_discovery.json"]
    assert config["rule_files"] == ["alerts.yml"]


def test_alerts_and_dashboard_query_only_exported_metrics():
    exported = _exported_names()
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alert_exprs = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    assert set(alert_exprs) == {"GenintGenerationStalled", "GenintDataWaitHigh", "GenintBacklogExhausted",
                                "GenintActorRestartLoop"}
    dashboard = json.loads(DASHBOARD.read_text())
    panel_exprs = {panel["title"]: " ".join(t["expr"] for t in panel["targets"]) for panel in dashboard["panels"]}
    variable_queries = {v["name"]: v["definition"] for v in dashboard["templating"]["list"] if "definition" in v}
    for where, expr in {**alert_exprs, **panel_exprs, **variable_queries}.items():
        used = set(_METRIC_NAME.findall(expr))
        assert used, f"{where} queries no genint metric"
        assert used <= exported, f"{where} queries unknown metrics {sorted(used - exported)}"


def test_dashboard_covers_every_metric_family():
    dashboard = DASHBOARD.read_text()
    for family in job_metrics("x").registry.collect():
        assert family.name in dashboard, f"no dashboard panel shows {family.name}"


def test_worker_groups_declare_the_resources_genint_places_on():
    groups = _groups()
    assert set(groups) == {"datagen", "trainer"}
    config = load_config(PAPER_CONFIG)
    wanted = {"datagen": config.datagen.actor_resources, "trainer": config.train.worker_resources}
    for name, group in groups.items():
        resources = _custom_resources(group)
        assert set(wanted[name]) <= set(resources), f"{name}: declares {resources}, the config asks {wanted[name]}"
        (container,) = _pod_containers(group)
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus >= 1
        # One custom-resource unit per GPU: each actor or worker gets its own GPU.
        assert resources[name] == gpus
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert _raycluster()["spec"]["enableInTreeAutoscaling"] is True


def test_every_ray_container_gets_the_token_from_the_secret():
    cluster = _raycluster()
    ray_containers = [_pod_containers(cluster["spec"]["headGroupSpec"])[0]]
    ray_containers += [c for group in _groups().values() for c in _pod_containers(group)]
    job = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())
    ray_containers += job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    env_lists = [container["env"] for container in ray_containers] + [cluster["spec"]["autoscalerOptions"]["env"]]
    for env in env_lists:
        values = {item["name"]: item for item in env}
        assert values["RAY_AUTH_MODE"]["value"] == "token"
        secret = values["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert (secret["name"], secret["key"]) == ("genint-ray-token", "auth_token")
    assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_rayjob_reads_its_config_where_the_head_mounts_the_configmap():
    job = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())
    cluster = _raycluster()
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[:2] == ["genint", "run"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in head["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in head["containers"][0]["volumeMounts"]}
    config_path = Path(entrypoint[2])
    assert volumes[mounts[str(config_path.parent)]]["configMap"]["name"] == "genint-job"


# The object-storage variant (raycluster-s3.yaml, rayjob-s3.yaml): no shared volume, the bucket's
# keys and GENINT_OUTPUT_URL from the Secret genint-s3, the same groups and placement as above.
def _s3_docs() -> tuple[list[dict], dict]:
    docs = list(yaml.safe_load_all((KUBERAY / "raycluster-s3.yaml").read_text()))
    return docs, yaml.safe_load((KUBERAY / "rayjob-s3.yaml").read_text())


def test_s3_cluster_has_no_shared_volume_and_every_ray_pod_reads_the_bucket_secret():
    docs, job = _s3_docs()
    assert [doc["kind"] for doc in docs] == ["RayCluster"]  # no PersistentVolumeClaim
    (cluster,) = docs
    specs = [cluster["spec"]["headGroupSpec"]["template"]["spec"]]
    specs += [group["template"]["spec"] for group in cluster["spec"]["workerGroupSpecs"]]
    for spec in specs:
        assert not [volume for volume in spec["volumes"] if "persistentVolumeClaim" in volume]
        ray_container = spec["containers"][0]
        assert ray_container["envFrom"] == [{"secretRef": {"name": "genint-s3"}}]
        # genint's scratch (TMPDIR's default /tmp) is the pod's own disk.
        mounts = {mount["mountPath"]: mount["name"] for mount in ray_container["volumeMounts"]}
        scratch = {volume["name"]: volume for volume in spec["volumes"]}[mounts["/tmp"]]
        assert "emptyDir" in scratch
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert "--set output_dir=$GENINT_OUTPUT_URL" in job["spec"]["entrypoint"]


def test_s3_cluster_places_like_the_shared_volume_one():
    (cluster,), _ = _s3_docs()
    shared = _raycluster()

    def placement(spec: dict) -> list:
        return [(group["groupName"], group["rayStartParams"], group["minReplicas"], group["maxReplicas"],
                 _pod_containers(group)[0]["resources"]) for group in spec["workerGroupSpecs"]]

    assert placement(cluster["spec"]) == placement(shared["spec"])
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"] == shared["spec"]["headGroupSpec"]["rayStartParams"]
