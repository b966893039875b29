"""Offline checks of the deployment files: compose stack, images, Kubernetes manifests, Prometheus alert
rules, the Grafana dashboard and the generated event reference.

No container engine or cluster is available where these run, so each file is checked the strongest way the
machine allows: real tools when installed (`docker-compose config`, `kubectl kustomize`, `promtool check`
/ `promtool test rules`), and otherwise structural checks that catch what breaks a deployment in practice:
a service or volume that is referenced but not defined, an env var the settings do not know, a selector
that matches no pod, a dashboard query on a metric the worker does not export.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

from socratext.settings import Settings  # noqa: E402
from socratext.stack import NOTIFY_ARN, NOTIFY_TARGET, UPLOAD_PREFIX  # noqa: E402
from socratext.topics import topic_partitions  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "socratext.json"
GRAFANA_PROV = DEPLOY / "grafana" / "provisioning"
DOCS = REPO / "docs"

SETTINGS = Settings()
SETTINGS_ENV = {f"SOCRATEXT_{name.upper()}" for name in Settings.model_fields}
DEPLOY_ONLY_ENV = {"SOCRATEXT_MODEL_URI"}  # read by deploy/docker/fetch_model.py's caller, not by Settings
TOPICS = {SETTINGS.topic_uploaded, SETTINGS.topic_ocr, SETTINGS.topic_extracted, SETTINGS.topic_review,
          SETTINGS.topic_deadletter}
METRIC_RE = re.compile(r"\b(socratext_[a-z0-9_]+)\b")
OTHER_METRICS = {"kafka_consumergroup_lag", "up"}  # kafka-exporter and Prometheus itself
PROM_TARGET_LABELS = {"job", "instance", "service"}
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def load_yaml_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


# ---------------------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "kafka-init", "minio", "minio-init", "worker-ocr", "worker-extract",
                 "worker-extract-gpu", "kafka-exporter", "prometheus", "grafana", "tensorboard"):
        assert name in services, f"compose has no service {name}"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka = env_of(services["kafka"])
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    cluster_id = kafka["CLUSTER_ID"]  # the form `kafka-storage.sh random-uuid` prints: base64url, 16 bytes
    assert len(cluster_id) == 22 and len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert services["worker-ocr"]["command"] == ["--stage", "ocr"]
    assert services["worker-extract"]["command"] == ["--stage", "extract"]
    gpu = services["worker-extract-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["build"]["dockerfile"].endswith("Dockerfile.cuda")
    assert env_of(gpu)["SOCRATEXT_DEVICE"] == "cuda"


def test_compose_references_resolve(compose: dict[str, Any]) -> None:
    services = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    base = COMPOSE.parent
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name}: neither image nor build"
        if "build" in svc:
            context = (base / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), f"{name}: Dockerfile missing"
        deps = svc.get("depends_on") or {}
        for dep in deps:
            assert dep in services, f"{name} depends on undefined service {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0]
            if source.startswith((".", "/")):
                if source.rstrip("/").endswith("runs"):  # TensorBoard log dir: created by training runs
                    continue
                assert (base / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source} not declared"


def test_compose_env_matches_settings(compose: dict[str, Any]) -> None:
    """A misspelt SOCRATEXT_* variable would be ignored silently (extra="ignore"): refuse it here."""
    for name, svc in compose["services"].items():
        for key in env_of(svc):
            if key.startswith("SOCRATEXT_"):
                assert key in SETTINGS_ENV | DEPLOY_ONLY_ENV, f"{name}: unknown setting {key}"
    worker = env_of(compose["services"]["worker-ocr"])
    kafka = env_of(compose["services"]["kafka"])
    assert f"PLAINTEXT://{worker['SOCRATEXT_KAFKA_BOOTSTRAP']}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert worker["SOCRATEXT_S3_ENDPOINT"].startswith("http://minio:")


def test_compose_topics_and_notification_match_the_local_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    script = "\n".join(services["kafka-init"]["command"])
    specs = dict(re.findall(r"(receipts\.[a-z]+):(\d+)", script))
    assert {k: int(v) for k, v in specs.items()} == topic_partitions(SETTINGS)
    minio = env_of(services["minio"])
    target = NOTIFY_TARGET
    assert minio[f"MINIO_NOTIFY_KAFKA_ENABLE_{target}"] == "on"
    assert minio[f"MINIO_NOTIFY_KAFKA_TOPIC_{target}"] == SETTINGS.topic_uploaded
    bootstrap = env_of(services["worker-ocr"])["SOCRATEXT_KAFKA_BOOTSTRAP"]
    assert minio[f"MINIO_NOTIFY_KAFKA_BROKERS_{target}"] == bootstrap
    init = "\n".join(services["minio-init"]["command"])
    assert f"mc mb --ignore-existing local/{SETTINGS.s3_bucket}" in init
    assert f"{NOTIFY_ARN} --event put --prefix {UPLOAD_PREFIX}" in init


def test_compose_config_with_the_real_tool() -> None:
    """`docker compose config` needs no engine; Debian's docker-compose (v1.29) validates the same file."""
    if shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                   timeout=30).returncode == 0:
        cmd = ["docker", "compose"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    res = subprocess.run([*cmd, "-f", str(COMPOSE), "--profile", "gpu", "--profile", "tools", "config", "-q"],
                         capture_output=True, text=True, timeout=60, cwd=COMPOSE.parent)
    assert res.returncode == 0, res.stderr


def kafka_properties_from_env(env: dict[str, str], log_dir: Path) -> str:
    """server.properties as the apache/kafka image derives it from KAFKA_* variables (`_` → `.`,
    `__` → `_`, `___` → `-`); JVM options are not broker settings."""
    lines = []
    for key, value in env.items():
        if not key.startswith("KAFKA_") or key in ("KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_LOG4J_OPTS"):
            continue
        prop = key[6:].lower().replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")
        lines.append(f"{prop}={log_dir if prop == 'log.dirs' else value}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_compose_kafka_config_is_accepted_by_kafka(compose: dict[str, Any], tmp_path: Path) -> None:
    """The broker settings of the compose file go through Kafka's own validation (KafkaConfig + KRaft
    storage format), with the jars the local stack installed."""
    from socratext.stack import format_kafka_storage, kafka_jvm, kafka_lib
    from tests.conftest_stack import skip_unless_required

    if shutil.which("java") is None or not list(kafka_lib().glob("kafka-server-*.jar")):
        skip_unless_required("java or the Kafka jars (deploy/local/install.sh) are missing")
    env = env_of(compose["services"]["kafka"])
    props = tmp_path / "server.properties"
    props.write_text(kafka_properties_from_env(env, tmp_path / "data"), encoding="utf-8")
    # the stack's own format step (a StackError with Kafka's output when it refuses the config)
    format_kafka_storage(kafka_jvm(tmp_path), props, [], cluster_id=env["CLUSTER_ID"])
    assert (tmp_path / "data" / "meta.properties").is_file()


# ---------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile(name: str) -> None:
    text = (DEPLOY / "docker" / name).read_text(encoding="utf-8")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the image must run as a non-root user"
    for pkg in ("tesseract-ocr", "tesseract-ocr-fra", "tesseract-ocr-eng"):
        assert re.search(rf"\b{re.escape(pkg)}\b", final_stage), pkg
    assert "-c constraints.txt" in text
    # the deep OCR's runtime: the CPU build in the CPU image, the CUDA build (same module) in the GPU one
    ocr_extra = "ppocr-gpu" if name.endswith(".cuda") else "ppocr"
    assert re.search(rf"^ARG EXTRAS=stream,{ocr_extra}$", text, re.M) and '".[${EXTRAS}]"' in text
    assert re.search(r'^ENTRYPOINT \["python", "-m", "streams.worker"\]', text, re.M)
    ignore = (DEPLOY / "docker" / f"{name}.dockerignore").read_text(encoding="utf-8")
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"{name} copies missing {path}"
            assert f"!{path.rstrip('/')}" in ignore.replace("/\n", "\n"), f"{path} excluded by .dockerignore"


def test_fetch_model_paths(tmp_path: Path) -> None:
    fm = _load(DEPLOY / "docker" / "fetch_model.py", "fetch_model")
    assert fm.parse_s3_uri("s3://receipts/models/small/v3") == ("receipts", "models/small/v3/")
    assert fm.parse_s3_uri("s3://receipts/models/small/v3/") == ("receipts", "models/small/v3/")
    for bad in ("http://x/y", "s3://receipts", "s3:///models", "receipts/models"):
        with pytest.raises(ValueError):
            fm.parse_s3_uri(bad)
    prefix = "models/small/v3/"
    assert fm.local_path(prefix + "config.json", prefix, tmp_path) == tmp_path / "config.json"
    assert fm.local_path(prefix + "tok/vocab.txt", prefix, tmp_path) == tmp_path / "tok" / "vocab.txt"
    for bad in (prefix + "../../etc/passwd", "models/other/config.json", prefix):
        with pytest.raises(ValueError):
            fm.local_path(bad, prefix, tmp_path)
    assert fm.missing_files([prefix + "config.json", prefix + "labels.json"], prefix) == []
    assert fm.missing_files([prefix + "config.json"], prefix) == ["labels.json"]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_replay_plan_rebuilds_originals() -> None:
    """Dead letters made by the workers' own constructor are unwrapped byte for byte, to their origin."""
    events = pytest.importorskip("streams.events")
    replay = _load(DEPLOY / "tools" / "replay_deadletters.py", "replay_deadletters")
    text = json.dumps({"receipt_id": "r1", "bucket": "receipts", "key": "incoming/a.jpg"}).encode()
    binary = bytes(range(256))
    big = b"x" * (events.MAX_DEADLETTER_ORIGINAL + 1)
    dl = events.deadletter_event
    letters = [
        dl(text, stage="ocr", code="storage_unavailable", message="down", receipt_id="r1",
           topic=SETTINGS.topic_uploaded, partition=2, offset=7),
        dl(binary, stage="extract", code="model_failed", message="boom", receipt_id="r2"),
        dl(text, stage="ocr", code="not_an_image", message="no", receipt_id="r3"),
        dl(big, stage="ocr", code="storage_unavailable", message="down", receipt_id="r4"),
    ]
    stage_topics = {"ocr": SETTINGS.topic_uploaded, "extract": SETTINGS.topic_ocr}
    letters = json.loads(json.dumps(letters))  # as read back from the topic
    plan = replay.plan(letters, codes=replay.TRANSIENT_CODES, stage_topics=stage_topics)
    assert plan.replays == [replay.Replay(SETTINGS.topic_uploaded, b"r1", text),
                            replay.Replay(SETTINGS.topic_ocr, b"r2", binary)]
    assert plan.skipped == {"code not selected": 1, "original truncated": 1}
    only_ocr = replay.plan(letters, codes=["storage_unavailable", "model_failed"], stage_topics=stage_topics,
                           stage="ocr")
    assert [r.key for r in only_ocr.replays] == [b"r1"]
    assert replay.plan(letters, codes=["model_failed"], stage_topics=stage_topics,
                       since="2999-01-01").replays == []


# ---------------------------------------------------------------------------------------------- k8s


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """The rendered kustomization (kubectl when installed, so the kustomization itself is checked too)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    if shutil.which("kubectl"):
        res = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    else:
        docs = [d for f in kustomization["resources"] for d in load_yaml_all(K8S / f)]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}, "file not listed"
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_k8s_deployments_are_production_ready(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    assert {"socratext-worker-ocr", "socratext-worker-extract"} <= set(deployments)
    for name, dep in deployments.items():
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        assert selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]), name
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{name} may run as root"
        for c in pod.get("initContainers", []) + pod["containers"]:
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{name}/{c['name']}: {part}"
            csc = c.get("securityContext", {})
            assert csc.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']}"
            assert csc.get("runAsUser", 10001) != 0
        for c in pod["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                http = c.get(probe, {}).get("httpGet")
                assert http and http["path"] == "/healthz", f"{name}/{c['name']}: {probe} on /healthz"
                assert http["port"] in ports or http["port"] in ports.values(), f"{name}: {probe} port"
            assert ports.get("metrics") == SETTINGS.metrics_port or "SOCRATEXT_METRICS_PORT" in str(c)


def test_k8s_env_references_exist(manifests: list[dict[str, Any]]) -> None:
    config_maps = by_kind(manifests, "ConfigMap")
    secrets = by_kind(manifests, "Secret")

    def keys(kind: dict[str, dict[str, Any]], name: str) -> set[str]:
        assert name in kind, f"reference to missing {name}"
        doc = kind[name]
        return set(doc.get("data") or {}) | set(doc.get("stringData") or {})

    for cm in config_maps.values():
        for key in cm.get("data", {}):
            if key.startswith("SOCRATEXT_"):
                assert key in SETTINGS_ENV | DEPLOY_ONLY_ENV, f"unknown setting {key}"
    for dep in by_kind(manifests, "Deployment").values():
        pod = dep["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + pod["containers"]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    keys(config_maps, src["configMapRef"]["name"])
                if "secretRef" in src:
                    keys(secrets, src["secretRef"]["name"])
            for env in c.get("env", []):
                name = env["name"]
                assert not name.startswith("SOCRATEXT_") or name in SETTINGS_ENV | DEPLOY_ONLY_ENV, name
                ref = env.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in keys(config_maps, ref["configMapKeyRef"]["name"])
                if "secretKeyRef" in ref:
                    present = keys(secrets, ref["secretKeyRef"]["name"])  # the Secret must exist
                    assert ref["secretKeyRef"].get("optional") or ref["secretKeyRef"]["key"] in present
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{c['name']}: volume {mount['name']} not defined"
    cm = config_maps["socratext-config"]["data"]
    logical = ("uploaded", "ocr", "extracted", "review", "deadletter")
    assert {cm[f"SOCRATEXT_TOPIC_{t.upper()}"] for t in logical} == TOPICS


def test_k8s_scaling_targets_and_kafka_trigger(manifests: list[dict[str, Any]]) -> None:
    faust_app = pytest.importorskip("streams.app", reason="faust (the stream extra) is not installed")
    deployments = by_kind(manifests, "Deployment")
    scaled = by_kind(manifests, "ScaledObject")
    cm = by_kind(manifests, "ConfigMap")["socratext-config"]["data"]
    partitions = topic_partitions(SETTINGS)
    expected_topic = {"socratext-worker-ocr": SETTINGS.topic_uploaded,
                      "socratext-worker-extract": SETTINGS.topic_ocr}
    assert {so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()} == set(expected_topic)
    for so in scaled.values():
        target = so["spec"]["scaleTargetRef"]["name"]
        assert target in deployments, f"ScaledObject targets missing Deployment {target}"
        (trigger,) = so["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["bootstrapServers"] == cm["SOCRATEXT_KAFKA_BOOTSTRAP"]
        assert meta["consumerGroup"] == faust_app.APP_ID
        assert meta["topic"] == expected_topic[target]
        assert int(meta["lagThreshold"]) > 0
        spec = so["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions[meta["topic"]]


def test_k8s_gpu_extraction(manifests: list[dict[str, Any]]) -> None:
    pod = by_kind(manifests, "Deployment")["socratext-worker-extract"]["spec"]["template"]["spec"]
    worker = next(c for c in pod["containers"] if c["name"] == "worker")
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert worker["image"].endswith(":cuda") or worker["image"] == "socratext-cuda"
    assert {"name": "SOCRATEXT_DEVICE", "value": "cuda"} in worker["env"]
    ocr = by_kind(manifests, "Deployment")["socratext-worker-ocr"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(ocr), "the OCR stage must not hold a GPU"


def test_k8s_selectors_match(manifests: list[dict[str, Any]]) -> None:
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(manifests, "Deployment").values()]
    services = by_kind(manifests, "Service")
    for name, svc in services.items():
        assert any(selects(svc["spec"]["selector"], p) for p in pods), f"Service {name} selects no pod"
    for name, pdb in by_kind(manifests, "PodDisruptionBudget").items():
        assert sum(selects(pdb["spec"]["selector"]["matchLabels"], p) for p in pods) == 1, name
        assert "maxUnavailable" in pdb["spec"] or pdb["spec"].get("minAvailable", 0) == 0
    monitors = by_kind(manifests, "ServiceMonitor")
    assert monitors, "no ServiceMonitor"
    for mon in monitors.values():
        picked = [s for s in services.values() if selects(mon["spec"]["selector"]["matchLabels"],
                                                         s["metadata"]["labels"])]
        assert len(picked) == 2
        for ep in mon["spec"]["endpoints"]:
            assert all(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in picked)
        job_label = mon["spec"]["jobLabel"]
        # the job label alerts.yml and the dashboard filter on
        assert {s["metadata"]["labels"][job_label] for s in picked} == {"socratext-worker"}


def test_k8s_prometheus_rule_equals_alerts_file(manifests: list[dict[str, Any]]) -> None:
    (rule,) = by_kind(manifests, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- metrics


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name → label names, as the worker's registry exposes them (counters `_total`, histograms
    `_bucket/_sum/_count`)."""
    from streams.metrics import StreamMetrics

    out: dict[str, set[str]] = {}
    for collector in list(StreamMetrics().registry._collector_to_names):  # noqa: SLF001 - no public list
        for family in collector.describe():
            labels = set(getattr(collector, "_labelnames", ()))
            suffixes = SUFFIXES.get(family.type, [""])
            for s in suffixes:
                out[family.name + s] = labels | ({"le"} if s == "_bucket" else set())
    return out


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names in its `{...}` matcher) for every metric reference in a PromQL expression."""
    out = []
    for m in re.finditer(r"\b([a-z_][a-z0-9_]*)\s*(\{[^}]*\})?", expr):
        labels = set(re.findall(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2) or ""))
        out.append((m.group(1), labels))
    return out


def test_worker_exports_every_metric_the_dashboard_and_alerts_query(dashboard: dict[str, Any],
                                                                   exported: dict[str, set[str]]) -> None:
    for expr in dashboard_exprs(dashboard) + alert_exprs():
        for name in METRIC_RE.findall(expr):
            assert name in exported, f"{name} (in {expr!r}) is not exported by streams.metrics"
        for name, labels in selectors(expr):
            if name in exported:
                unknown = labels - exported[name] - PROM_TARGET_LABELS
                assert not unknown, f"{name} has no label {unknown} (in {expr!r})"


def test_dashboard_shows_every_worker_metric(dashboard: dict[str, Any],
                                             exported: dict[str, set[str]]) -> None:
    used = {m for e in dashboard_exprs(dashboard) for m in METRIC_RE.findall(e)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families <= shown, f"metrics without a panel: {sorted(families - shown)}"
    assert any("kafka_consumergroup_lag" in e for e in dashboard_exprs(dashboard)), "no lag panel"
    assert any("histogram_quantile(0.99" in e for e in dashboard_exprs(dashboard)), "no p99 panel"


def test_dashboard_is_generated() -> None:
    rendered = _load(DEPLOY / "grafana" / "gen_dashboard.py", "gen_dashboard").render()
    assert DASHBOARD.read_text(encoding="utf-8") == rendered, \
        "dashboard JSON edited by hand: change deploy/grafana/gen_dashboard.py and regenerate it"


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    prov = yaml.safe_load((GRAFANA_PROV / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    assert variables["datasource"]["current"]["value"] == prov["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"panel {p['title']!r} overlaps another"
        cells |= area
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var.startswith("__"), f"unknown variable ${var}"


def test_grafana_provisioning_matches_compose(compose: dict[str, Any]) -> None:
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["services"]["grafana"]["volumes"]
                  if v.startswith("."))
    dash_prov = yaml.safe_load((GRAFANA_PROV / "dashboards" / "socratext.yml").read_text(encoding="utf-8"))
    path = dash_prov["providers"][0]["options"]["path"]
    host = next(h for h, c in mounts.items() if c == path)
    assert (COMPOSE.parent / host / DASHBOARD.name).is_file()
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"


# ---------------------------------------------------------------------------------------------- PromQL


def balanced(expr: str) -> bool:
    stack, pairs, quote = [], {")": "(", "]": "[", "}": "{"}, None
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote and expr[i - 1] != "\\":
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and quote is None


def test_promql_sanity(dashboard: dict[str, Any]) -> None:
    """Without promtool: brackets and quotes balance, every metric is one we know, rates have a range."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= set(rule)
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
    for expr in dashboard_exprs(dashboard) + alert_exprs():
        assert balanced(expr), expr
        for fn in re.findall(r"\b(rate|increase|delta)\(([^()]*)\)", expr):
            assert re.search(r"\[(\d+[smh]|\$__rate_interval)\]$", fn[1]), f"{fn[0]} without a range: {expr}"
        for name, _ in selectors(expr):
            if name.startswith(("socratext_", "kafka_")):
                assert METRIC_RE.fullmatch(name) or name in OTHER_METRICS, name


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (Debian package `prometheus`)")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_promtool
def test_promtool_checks_rules_and_config(tmp_path: Path) -> None:
    res = promtool("check", "rules", str(ALERTS))
    assert res.returncode == 0, res.stdout + res.stderr
    res = promtool("check", "config", "--syntax-only", str(PROM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_promtool_alert_unit_tests() -> None:
    """Each alert fires on the failure it describes and stays quiet on a healthy pipeline."""
    res = promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool has no 'check query': each dashboard query becomes a recording rule, which it parses."""
    rules = []
    for i, expr in enumerate(dashboard_exprs(dashboard)):
        expr = expr.replace("$__rate_interval", "1m").replace("$consumergroup", ".*")
        assert "$" not in expr, f"unsubstituted variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    res = promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


class _StaticLag:
    """A stand-in for kafka-exporter: the one series the dashboard reads from it."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge, generate_latest

        self.registry = CollectorRegistry()
        self._render = generate_latest
        self.lag = Gauge("kafka_consumergroup_lag", "lag", ["consumergroup", "topic", "partition"],
                         registry=self.registry)

    def render(self) -> bytes:
        return self._render(self.registry)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prom_query(port: int, expr: str) -> list[dict[str, Any]]:
    import urllib.parse
    import urllib.request

    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (Debian package)")
def test_every_dashboard_query_returns_data_from_a_real_worker_endpoint(dashboard: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    """No Grafana here, so do what it would: a real Prometheus scrapes a real worker metrics endpoint
    (streams.metrics, fed like the agents feed it) and answers every panel query with data."""
    import threading
    import time
    import urllib.request

    from streams.metrics import MetricsServer, StreamMetrics

    m, lag = StreamMetrics(), _StaticLag()
    m.set_model("rules", "1")
    m.set_ocr_engine(SimpleNamespace(name="tesserocr", device="cpu"))
    worker = MetricsServer(m, 0, host="127.0.0.1").start()
    exporter = MetricsServer(lag, 0, host="127.0.0.1").start()  # type: ignore[arg-type]
    stop = threading.Event()

    def traffic() -> None:  # counters must move between scrapes for rate() to see them
        i = 0
        while not stop.is_set():
            i += 1
            m.count("ocr", "in", 3)
            m.count("ocr", "out", 2)
            m.count("extract", "in", 2)
            m.count("extract", "out", 2)
            for step, seconds in (("fetch", 0.02), ("decode", 0.05), ("ocr", 1.2), ("model", 0.3),
                                  ("assemble", 0.004)):
                m.observe_stage(step, seconds)
            m.end_to_end.observe(2.5)
            m.batch_size.observe(4)
            m.confidence.observe(0.82)
            m.review.inc()
            m.deadletter.labels(code="not_an_image").inc()
            m.transactions.labels(topic="receipts.ocr", outcome="committed").inc()
            lag.lag.labels(consumergroup="socratext", topic="receipts.ocr", partition="0").set(10 * i)
            stop.wait(0.25)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    port = _free_port()
    worker_target = {"targets": [f"127.0.0.1:{worker.port}"], "labels": {"service": "worker"}}
    exporter_target = {"targets": [f"127.0.0.1:{exporter.port}"]}
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "socratext-worker", "static_configs": [worker_target]},
                                 {"job_name": "kafka-exporter", "static_configs": [exporter_target]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:  # ready, and enough samples of both targets for rate() over 10 s
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "prometheus exited"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                got = _prom_query(port, "min(count_over_time(up[1m]))")
                if got and float(got[0]["value"][1]) >= 5:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not scrape in time"
            time.sleep(0.5)
        empty = []
        for panel in dashboard["panels"]:
            for t in panel.get("targets", []):
                expr = t["expr"].replace("$__rate_interval", "10s").replace("$consumergroup", ".*")
                result = _prom_query(port, expr)
                if not result or all(r["value"][1] in ("NaN", "+Inf", "-Inf") for r in result):
                    empty.append(f"{panel['title']}: {expr}")
        assert not empty, "queries without data:\n" + "\n".join(empty)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=20)
        worker.stop()
        exporter.stop()


# ---------------------------------------------------------------------------------------------- docs


def test_events_reference_is_up_to_date() -> None:
    if not list((REPO / "socratext" / "schemas").glob("*.json")):
        pytest.skip("no event schemas yet")
    rendered = _load(DOCS / "gen_events.py", "gen_events").render()
    assert (DOCS / "events.md").read_text(encoding="utf-8") == rendered, \
        "docs/events.md is stale: run `python docs/gen_events.py > docs/events.md`"
    for topic in TOPICS:
        assert f"## {topic}" in rendered


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


def test_runbook_links_resolve() -> None:
    ops = anchors((DOCS / "operations.md").read_text(encoding="utf-8"))
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            page, _, anchor = rule["annotations"]["runbook"].partition("#")
            assert page == "docs/operations.md", rule["alert"]
            assert anchor in ops, f"{rule['alert']}: runbook section #{anchor} missing"
    for needed in ("scaling", "replays", "model-rollback", "dead-letter-handling"):
        assert needed in ops


def test_architecture_has_the_receipt_flow() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    diagram = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert diagram, "no mermaid diagram"
    for topic in TOPICS:
        assert topic in diagram.group(1), f"{topic} missing from the diagram"
