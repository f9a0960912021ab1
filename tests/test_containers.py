"""Static checks of the container files (no Docker engine is needed): Dockerfile stages and their
instructions, docker-compose.yml (+ the GPU override) and .dockerignore; and the compose file's Redis options
run by a local redis-server."""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import socket
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import yaml  # noqa: E402  (dev extra)

ROOT = Path(__file__).resolve().parents[1]


# --- a small Dockerfile parser ----------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)   # (KEYWORD, arguments)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.args(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name). Joins continuation lines, drops comments, substitutes
    ${ARG} in FROM from the global ARGs."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):          # comment lines inside a continuation are skipped
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"cannot parse FROM {rest!r}"
            base = re.sub(r"\$\{(\w+)\}", lambda g: global_args.get(g.group(1), g.group(0)), m.group(1))
            name = m.group(2) or f"stage{len(stages)}"
            assert name not in stages, f"stage {name} defined twice"
            current = stages[name] = Stage(name, base)
        elif current is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, value = rest.partition("=")
            global_args[key] = value
        else:
            current.instructions.append((keyword, rest))
    return global_args, stages


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    out = [stages[name]]
    while out[-1].base in stages:
        out.append(stages[out[-1].base])
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def probed_paths(command: str) -> list[str]:
    """The paths of the service's URLs a health-check command requests."""
    return re.findall(r"https?://(?:127\.0\.0\.1|localhost):8000(/[\w/-]*)", command)


@pytest.fixture(scope="module")
def dockerfile():
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def torch_pin(pyproject) -> str:
    (pin,) = [d for d in pyproject["project"]["optional-dependencies"]["train"] if d.startswith("torch")]
    return pin.split("==")[1]


def test_parser_handles_continuations_comments_and_args():
    global_args, stages = parse_dockerfile(
        "ARG IMG=python:3.11-slim\n# c\nFROM ${IMG} AS a\nRUN one \\\n  # inside\n  && two\nFROM a AS b\nUSER x\n")
    assert global_args == {"IMG": "python:3.11-slim"}
    assert stages["a"].base == "python:3.11-slim" and stages["a"].args("RUN") == ["one && two"]
    assert [s.name for s in chain(stages, "b")] == ["b", "a"]


def test_stages_present(dockerfile):
    _, stages = dockerfile
    assert {"base", "serve", "serve-gpu", "train"} <= set(stages)
    assert stages["base"].base.startswith("python:3.11-slim")
    assert stages["serve"].base == "base" and stages["train"].base == "base"


@pytest.mark.parametrize("name", ["serve", "serve-gpu"])
def test_serve_stages(dockerfile, pyproject, name):
    _, stages = dockerfile
    stage = stages[name]
    runs = " ".join(a for s in chain(stages, name) for a in s.args("RUN"))
    user = stage.last("USER")
    assert user and user.split(":")[0] not in ("root", "0"), "the service must run as a non-root user"
    assert stage.instructions.index(("USER", user)) > max(
        i for i, (k, _) in enumerate(stage.instructions) if k == "RUN"), "USER comes after the installs"
    assert "8000" in stage.args("EXPOSE")
    healthcheck = stage.last("HEALTHCHECK")
    assert healthcheck and "CMD" in healthcheck
    assert probed_paths(healthcheck) == ["/readyz"], "the health check probes readiness (models loaded)"
    assert any(re.search(r"\bRECSERVE_ARTIFACTS=/artifacts\b", a) for a in stage.args("ENV"))
    assert any("/artifacts" in a for a in stage.args("VOLUME"))
    assert exec_form(stage.last("CMD")) == ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000"]
    # only the serve extra, and no torch anywhere in what this image installs
    assert '".[serve]"' in runs or "'.[serve]'" in runs
    assert not re.search(r"\.\[[^\]]*(train|glove)", runs)
    assert "torch" not in runs.lower() and "download.pytorch.org" not in runs
    assert not any("torch" in d.lower() for d in pyproject["project"]["optional-dependencies"]["serve"])
    copied = " ".join(a for s in chain(stages, name) for a in s.args("COPY"))
    assert "service/" in copied and "bundle/" in copied and "models/" not in copied and "training/" not in copied


def test_serve_extra_installs_the_offline_docs_assets(pyproject):
    """/docs and /redoc serve Swagger UI and ReDoc from a package, which the serving images must install."""
    from importlib.metadata import packages_distributions

    from service import docs

    serve = {re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower().replace("_", "-")
             for d in pyproject["project"]["optional-dependencies"]["serve"]}
    provided_by = {d.lower().replace("_", "-") for d in packages_distributions().get(docs.ASSETS_PACKAGE, [])}
    assert provided_by & serve, f"{docs.ASSETS_PACKAGE} ({provided_by}) is not in the serve extra {serve}"


def test_serve_gpu_runs_on_cuda13_with_cudnn9(dockerfile):
    _, stages = dockerfile
    base = stages["serve-gpu"].base
    assert re.fullmatch(r"nvidia/cuda:13\.\d+(\.\d+)?-cudnn(9)?-runtime-ubuntu\d+\.\d+", base), base


def test_train_stage(dockerfile, pyproject):
    global_args, stages = dockerfile
    stage = stages["train"]
    runs = [re.sub(r"\$\{(\w+)\}", lambda g: global_args.get(g.group(1), g.group(0)), a) for a in stage.args("RUN")]
    joined = " ".join(runs)
    pin = torch_pin(pyproject)
    assert pin == "2.13.0" and f'"torch=={pin}"' in joined
    assert "https://download.pytorch.org/whl/cpu" in joined
    torch_first = next(r for r in runs if "torch==" in r)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_first   # CPU wheel, not PyPI's CUDA one
    assert '".[train,glove]"' in joined
    assert exec_form(stage.last("ENTRYPOINT")) == ["recserve"]
    user = stage.last("USER")
    assert user and user.split(":")[0] not in ("root", "0")
    copied = " ".join(stage.args("COPY"))
    assert all(f"{p}/" in copied for p in ("models", "training", "bundle", "service"))


def test_copy_sources_exist(dockerfile):
    _, stages = dockerfile
    for stage in stages.values():
        for args in stage.args("COPY"):
            if "--from" in args:                 # copies from another stage, not the repository
                continue
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for src in parts[:-1]:
                assert (ROOT / src).exists(), f"{stage.name}: COPY {src} does not exist in the repository"


def test_dockerignore_keeps_the_context_small_but_buildable():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.rstrip("/")) or path.startswith(p.rstrip("/") + "/") for p in patterns)

    for path in (".venv", "artifacts", "data", ".git", "bench/out"):
        assert ignored(path), f".dockerignore must exclude {path}"
    for path in ("pyproject.toml", "README.md", "service/app.py", "training/cli.py", "models/base.py"):
        assert not ignored(path), f".dockerignore must keep {path} (the image build needs it)"


# --- docker-compose ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def volumes_of(service: dict) -> dict[str, dict]:
    """target -> {source, read_only, type}, for short ("src:dst:ro") and long syntax."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = {"source": parts[0], "read_only": len(parts) > 2 and "ro" in parts[2].split(","),
                             "type": "bind" if parts[0].startswith((".", "/")) else "volume"}
        else:
            out[v["target"]] = {"source": v["source"], "read_only": bool(v.get("read_only")), "type": v["type"]}
    return out


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def test_compose_services(compose):
    assert set(compose["services"]) == {"redis", "api", "train"}
    assert {"artifacts", "redis-data"} <= set(compose["volumes"])


def redis_options(compose) -> dict[str, str]:
    """The redis service's `--option value` pairs (every option here takes exactly one value)."""
    redis = compose["services"]["redis"]
    command = redis["command"] if isinstance(redis["command"], list) else shlex.split(redis["command"])
    assert command[0] == "redis-server" and len(command) % 2 == 1
    assert all(a.startswith("--") for a in command[1::2]), command
    return dict(zip(command[1::2], command[2::2]))


def test_compose_redis(compose):
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    test = redis["healthcheck"]["test"]
    assert "redis-cli ping" in (" ".join(test) if isinstance(test, list) else test)


def test_compose_redis_persists_state_and_evicts_only_caches(compose):
    """State (events, added items) lives in Redis: an append-only file fsynced every second, kept in a named
    volume at the image's working directory; at maxmemory only keys with a TTL (the caches) are evicted."""
    opts = redis_options(compose)
    assert opts["--appendonly"] == "yes" and opts["--appendfsync"] == "everysec"
    assert opts["--maxmemory-policy"].startswith("volatile-")
    assert re.fullmatch(r"[1-9][0-9]*(b|kb|mb|gb)?", opts["--maxmemory"].lower()), "a non-zero maxmemory"
    vols = volumes_of(compose["services"]["redis"])
    assert vols["/data"] == {"source": "redis-data", "read_only": False, "type": "volume"}
    assert "redis-data" in compose["volumes"]
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    assert "redis" not in gpu["services"], "the GPU override must not replace the persisted redis"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_compose_redis_options_on_a_real_server(compose, tmp_path):
    """redis-server takes the compose file's options as they are (no typo, no bad value): AOF files appear
    in --dir; then, with maxmemory made small, keys without a TTL all survive what evicts keys with one."""
    import redis as redis_py  # here: `redis` names the compose service in this module

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = redis_options(compose)
    argv = ["redis-server", *(x for kv in opts.items() for x in kv), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = redis_py.Redis(port=port, socket_timeout=2)
        deadline = time.monotonic() + 5
        while True:
            try:
                client.ping()
                break
            except redis_py.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        config = {k: v for k, v in client.config_get("*").items()}
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == opts["--maxmemory-policy"] and int(config["maxmemory"]) > 0
        client.set("state:1", b"s")
        deadline = time.monotonic() + 5
        while not any((tmp_path / "appendonlydir").glob("*.aof")):
            assert time.monotonic() < deadline, "no append-only file"
            time.sleep(0.02)

        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 4 * 1024 * 1024)
        state = [f"state:{i}" for i in range(500)]
        client.mset({k: b"s" * 100 for k in state})
        for i in range(200):  # ~20 MB of cache entries with a TTL into ~4 MB of room
            pipe = client.pipeline(transaction=False)
            for j in range(50):
                pipe.set(f"cache:{i}:{j}", b"c" * 2000, ex=3600)
            pipe.execute()
        assert int(client.info("stats")["evicted_keys"]) > 0
        assert client.exists(*state) == len(state)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_compose_api(compose):
    api = compose["services"]["api"]
    assert api["build"]["target"] == "serve"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert env_of(api) == {"RECSERVE_REDIS_URL": "redis://redis:6379/0", "RECSERVE_ARTIFACTS": "/artifacts"}
    vols = volumes_of(api)
    assert vols["/artifacts"] == {"source": "artifacts", "read_only": True, "type": "volume"}
    assert api["ports"] == ["8000-8003:8000"]
    assert "container_name" not in api, "a fixed container name breaks --scale"
    test = api["healthcheck"]["test"]
    assert probed_paths(" ".join(test) if isinstance(test, list) else test) == ["/readyz"]


def test_compose_train(compose):
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["target"] == "train"
    vols = volumes_of(train)
    assert vols["/artifacts"]["source"] == "artifacts" and not vols["/artifacts"]["read_only"]
    assert vols["/data"]["source"] == "./data" and vols["/data"]["read_only"]
    command = train["command"] if isinstance(train["command"], list) else shlex.split(train["command"])
    assert command[:2] == ["train", "--all"]
    opts = dict(zip(command[2::2], command[3::2]))
    assert opts["--out"] == "/artifacts"
    # the paths are where `recserve data fetch` lays the data out (mind: DEST/train, DEST/valid)
    assert opts["--data-news"] == "/data/mind/train"
    assert opts["--valid-behaviors"] == "/data/mind/valid/behaviors.tsv"
    assert opts["--data-interactions"] == "/data/ml-100k"


def test_compose_gpu_override():
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    assert set(gpu["services"]) == {"api"}
    api = gpu["services"]["api"]
    assert api["build"]["target"] == "serve-gpu"
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert env_of(api).get("RECSERVE_PROVIDERS") == "cuda"


def test_compose_build_targets_exist(compose, dockerfile):
    _, stages = dockerfile
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    for doc in (compose, gpu):
        for name, service in doc["services"].items():
            if "build" in service:
                assert service["build"]["target"] in stages, f"{name}: no stage {service['build']['target']}"
