"""The deployment files under deploy/: what would break a real deployment, checked without running one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.settings import Settings
from gateway.shards import Shard

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
SETTINGS = {f"I2ES_{name.upper()}" for name in Settings.model_fields}
HUB_COMMAND = ["i2es", "gateway", "run"]
INIT_COMMAND = ["i2es", "init"]
PLUGINS = {"rabbitmq_management", "rabbitmq_auth_mechanism_ssl"}


# --- readers ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object of the kustomization's resources, in order."""
    objects = []
    for name in kustomization()["resources"]:
        objects += [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]
    return objects


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in manifests() if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


def rabbitmq_conf(path: Path) -> dict[str, str]:
    return env_file(path)


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit's sections as lists of (key, value): keys such as Environment= repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def pod_specs() -> dict[str, dict[str, Any]]:
    """The hub's StatefulSet and the init Job, by kind."""
    return {
        "StatefulSet": one("StatefulSet", "i2es-hub")["spec"]["template"]["spec"],
        "Job": one("Job", "i2es-init")["spec"]["template"]["spec"],
    }


def compose_hubs() -> dict[str, dict[str, Any]]:
    """The compose services that run the hub, by name."""
    return {name: s for name, s in compose()["services"].items() if s.get("command") == HUB_COMMAND}


def shards_cover(shards: list[str]) -> None:
    """Hubs 1 to n of n, each once, n the same everywhere: what several hubs sharing the work need."""
    parsed = sorted((Shard.parse(s) for s in shards), key=lambda s: s.index)
    count = len(parsed)
    assert [(s.index, s.count) for s in parsed] == [(k, count) for k in range(1, count + 1)], shards


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


# --- every file -------------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert DEPLOY / "compose.yaml" in files and len(files) > 5
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs and all(isinstance(doc, dict) for doc in docs), path


def test_every_i2es_variable_is_a_setting() -> None:
    """A misspelt I2ES_ name is silently ignored by the hub: each must be a field of Settings."""
    used: dict[str, set[str]] = {}

    def note(names: Any, where: str) -> None:
        for name in names:
            if name.startswith("I2ES_"):
                used.setdefault(name, set()).add(where)

    text = (DEPLOY / "compose.yaml").read_text()
    note(re.findall(r"\$\{(I2ES_[A-Z0-9_]+)", text), "compose.yaml")
    for service in compose()["services"].values():
        note(service.get("environment", {}), "compose.yaml")
    note(env_file(DEPLOY / "hub.env.example"), "hub.env.example")
    note(env_file(SYSTEMD / "hub.env.example"), "systemd/hub.env.example")
    for path in SYSTEMD.glob("*.service"):
        service = unit(path)["Service"]
        note((v.partition("=")[0] for v in values(service, "Environment")), path.name)
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        note(re.findall(r"\b(I2ES_[A-Z0-9_]+)=", line), "Containerfile")
    note(one("ConfigMap", "i2es-hub")["data"], "kubernetes ConfigMap")
    for kind, spec in pod_specs().items():
        for container in containers(spec):
            # A variable the container's command reads itself (I2ES_HUB_COUNT) is not one for the hub.
            script = " ".join(container.get("command", []))
            note(
                (e["name"] for e in container.get("env", []) if "${" + e["name"] + "}" not in script),
                f"kubernetes {kind}",
            )

    assert {"I2ES_HOME", "I2ES_BROKER_URL", "I2ES_LEDGER_URL"} <= used.keys()
    unknown = {name: sorted(where) for name, where in used.items() if name not in SETTINGS}
    assert not unknown, f"not settings of the hub: {unknown}"


# --- compose ----------------------------------------------------------------------------------


def test_compose_runs_two_hubs_after_init() -> None:
    services = compose()["services"]
    hubs, init = compose_hubs(), services["init"]
    assert sorted(hubs) == ["hub-1", "hub-2"]
    for name, hub in hubs.items():
        # Replicas would all have the same environment, hence the same shard.
        assert hub.get("deploy", {}).get("replicas", 1) == 1, name
        assert hub.get("stop_signal", "SIGTERM") == "SIGTERM", name
        assert hub["healthcheck"]["test"] == ["CMD", "i2es-healthcheck"], name
        assert hub["depends_on"]["init"]["condition"] == "service_completed_successfully", name
        assert init["image"] == hub["image"], name
        assert {k: v for k, v in hub["environment"].items() if not k.startswith("I2ES_HUB_")} == init["environment"]
    assert init["command"] == INIT_COMMAND
    nodes = [name for name, s in services.items() if s["image"].startswith("rabbitmq:")]
    for dependency in [*nodes, "postgres"]:
        assert init["depends_on"][dependency]["condition"] == "service_healthy"


def test_compose_rabbitmq_is_one_cluster_of_three() -> None:
    services = compose()["services"]
    nodes = {name: s for name, s in services.items() if s["image"].startswith("rabbitmq:")}
    assert len(nodes) == 3
    conf = rabbitmq_conf(DEPLOY / "compose" / "rabbitmq.conf")
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")}
    assert listed == {f"rabbit@{s['hostname']}" for s in nodes.values()}
    cookies = {s["environment"]["RABBITMQ_ERLANG_COOKIE"] for s in nodes.values()}
    assert len(cookies) == 1, "the nodes must share one Erlang cookie"
    broker_host = urlsplit(services["hub-1"]["environment"]["I2ES_BROKER_URL"]).hostname
    for name, node in nodes.items():
        assert re.fullmatch(r"rabbitmq:3\.\d+-management", node["image"]), name
        assert broker_host in node["networks"]["default"]["aliases"], name
        assert node["healthcheck"]["test"], name
        mounts = {m.split(":")[1]: m.split(":")[0] for m in node["volumes"]}
        # conf.d is read after the image's own defaults, which would otherwise win.
        assert mounts["/etc/rabbitmq/conf.d/90-i2es.conf"] == "./compose/rabbitmq.conf", name
        plugins = (DEPLOY / mounts["/etc/rabbitmq/enabled_plugins"]).read_text()
        assert set(re.findall(r"\w+", plugins)) >= PLUGINS, name
    assert conf["max_message_size"] == rabbitmq_conf(DEPLOY / "rabbitmq" / "rabbitmq.conf")["max_message_size"]


def test_compose_hubs_have_shards_1_and_2_of_2_and_names_of_their_own() -> None:
    environments = [hub["environment"] for hub in compose_hubs().values()]
    shards = sorted(env["I2ES_HUB_SHARD"] for env in environments)
    assert shards == ["1/2", "2/2"]
    shards_cover(shards)
    names = [env["I2ES_HUB_NAME"] for env in environments]
    assert all(names) and len(set(names)) == len(names), names


def test_compose_state_volume_is_shared_and_holds_the_home() -> None:
    document = compose()
    services = document["services"]
    hubs = compose_hubs()
    assert hubs
    for name, hub in hubs.items():
        assert hub["volumes"] == services["init"]["volumes"], name
        volume, path = hub["volumes"][0].split(":")[:2]
        assert volume in document["volumes"], name
        assert hub["environment"]["I2ES_HOME"].startswith(path + "/"), name


def test_compose_variables_are_in_the_example_env_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    example = env_file(DEPLOY / "hub.env.example")
    needed = {name for name, default in re.findall(r"\$\{(\w+)(:-)?", text) if not default}
    assert needed and not needed - example.keys(), f"missing from hub.env.example: {needed - example.keys()}"


def test_containerfile() -> None:
    lines = [line.strip() for line in (DEPLOY / "Containerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert lines[-1] == 'CMD ["i2es", "gateway", "run"]'
    assert any("pip install ." in line for line in lines)
    # The XML schemas are not in the wheel: the hub reads them from I2ES_SCHEMA_DIR.
    copied = [line.split()[-1] for line in lines if line.startswith("COPY schemas ")]
    text = " ".join(lines)
    assert copied and f"I2ES_SCHEMA_DIR={copied[0]}" in text
    assert (DEPLOY / "hub-healthcheck").stat().st_mode & 0o111


# --- systemd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "command"), [("i2es-hub@.service", HUB_COMMAND), ("i2es-init.service", INIT_COMMAND)])
def test_systemd_unit(name: str, command: list[str]) -> None:
    service = unit(SYSTEMD / name)["Service"]
    (exec_start,) = values(service, "ExecStart")
    program, *arguments = exec_start.split()
    assert program.startswith("/") and program.endswith("/i2es") and arguments == command[1:]
    assert values(service, "EnvironmentFile") == ["/etc/i2es/hub.env"]
    settings = dict(service)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "User": "i2es",
    }.items():
        assert settings.get(key) == value, key
    environment = dict(v.partition("=")[::2] for v in values(service, "Environment"))
    home = Path(environment["I2ES_HOME"])
    writable = [Path(p) for p in settings["ReadWritePaths"].split()]
    assert any(p == home or p in home.parents for p in writable), "the state folder must be writable"
    assert f"/var/lib/{settings['StateDirectory']}" in map(str, [home, *home.parents])


def test_systemd_hub_takes_its_shard_from_the_instance_name() -> None:
    path = SYSTEMD / "i2es-hub@.service"
    environment = dict(v.partition("=")[::2] for v in values(unit(path)["Service"], "Environment"))
    # %I is the instance name unescaped: i2es-hub@1-2 is hub 1/2.
    assert environment["I2ES_HUB_SHARD"] == "%I"
    # The host name and the instance name: distinct for every hub, on every machine.
    assert environment["I2ES_HUB_NAME"] == "%H-%i"
    assert "I2ES_HUB_SHARD" not in env_file(SYSTEMD / "hub.env.example"), "it would override the unit's"
    assert "I2ES_HUB_NAME" not in env_file(SYSTEMD / "hub.env.example"), "it would override the unit's"
    # The instances the unit's own comment starts are hubs 1 to n of n.
    (line,) = [line for line in path.read_text().splitlines() if "systemctl enable" in line]
    instances = re.findall(r"i2es-hub@(\S+)", line)
    shards_cover([instance.replace("-", "/") for instance in instances])
    assert len(instances) == 2
    if shutil.which("systemd-escape"):
        unescaped = subprocess.run(
            ["systemd-escape", "--unescape", *instances], capture_output=True, text=True, check=True
        ).stdout.split()
        assert unescaped == [instance.replace("-", "/") for instance in instances]


def test_systemd_hub_is_a_template_that_stops_cleanly() -> None:
    sections = unit(SYSTEMD / "i2es-hub@.service")
    service = dict(sections["Service"])
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert int(service["TimeoutStopSec"]) >= 30
    assert "i2es-init.service" in " ".join(values(sections["Unit"], "After"))
    assert dict(unit(SYSTEMD / "i2es-init.service")["Service"])["Type"] == "oneshot"


# --- Kubernetes -------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization()["resources"]) == files
    images = {i["name"] for i in kustomization()["images"]}
    for spec in pod_specs().values():
        assert {c["image"] for c in containers(spec)} <= images


def test_rabbitmq_cluster() -> None:
    cluster = one("RabbitmqCluster")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] == 3
    rabbitmq = cluster["spec"]["rabbitmq"]
    assert set(rabbitmq["additionalPlugins"]) >= PLUGINS
    config = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition("=") for line in rabbitmq["additionalConfig"].splitlines())
    )
    reference = rabbitmq_conf(DEPLOY / "rabbitmq" / "rabbitmq.conf")
    for key in ("max_message_size", "loopback_users.guest"):
        assert config[key] == reference[key], key


def test_kubernetes_hub_and_init() -> None:
    specs = pod_specs()
    (hub,) = specs["StatefulSet"]["containers"]
    shell, flag, script = hub["command"]
    assert (shell, flag) == ("sh", "-c")
    assert script.endswith("; exec " + " ".join(HUB_COMMAND))
    assert [c["command"] for c in specs["Job"]["containers"]] == [INIT_COMMAND]
    assert specs["StatefulSet"]["terminationGracePeriodSeconds"] >= 30
    for kind, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
        for container in containers(spec):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (kind, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (kind, container["name"])
            assert container["resources"]["limits"]["memory"], (kind, container["name"])


def test_kubernetes_hubs_take_their_shard_from_the_pod_index() -> None:
    statefulset = one("StatefulSet", "i2es-hub")
    assert not [o for o in manifests() if o["kind"] == "Deployment" and o["metadata"]["name"] == "i2es-hub"]
    spec = statefulset["spec"]
    replicas = spec["replicas"]
    assert replicas == 2
    assert spec["podManagementPolicy"] == "Parallel"
    service = one("Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    (hub,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in hub["env"]}
    assert int(env["I2ES_HUB_COUNT"]["value"]) == replicas, "replicas and I2ES_HUB_COUNT must agree"
    fields = {name: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for name, e in env.items()}
    assert fields["POD_INDEX"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert fields["POD_NAME"] == "metadata.name"
    assert not {"I2ES_HUB_SHARD", "I2ES_HUB_NAME"} & (env.keys() | one("ConfigMap", "i2es-hub")["data"].keys())
    script = hub["command"][2]
    # Kubernetes would replace $(NAME) of a variable of the container in the command itself.
    assert not [name for name in env if f"$({name})" in script]
    # What the command exports in each Pod: hubs 1 to n of n, named after their Pods.
    shown = script.replace("exec " + " ".join(HUB_COMMAND), 'printf "%s %s\\n" "$I2ES_HUB_SHARD" "$I2ES_HUB_NAME"')
    exported = []
    for index in range(replicas):
        pod = f"{statefulset['metadata']['name']}-{index}"
        variables = {"PATH": os.environ["PATH"], "POD_INDEX": str(index), "POD_NAME": pod}
        variables["I2ES_HUB_COUNT"] = env["I2ES_HUB_COUNT"]["value"]
        result = subprocess.run(["sh", "-c", shown], env=variables, capture_output=True, text=True, check=True)
        shard, name = result.stdout.split()
        assert name == pod
        exported.append(shard)
    assert exported == [f"{k}/{replicas}" for k in range(1, replicas + 1)]
    shards_cover(exported)


def test_kubernetes_references_resolve() -> None:
    """Every claim, ConfigMap and Secret a Pod names exists, or is the one the RabbitMQ operator writes."""
    defined = {(o["kind"], o["metadata"]["name"]) for o in manifests()}
    cluster = one("RabbitmqCluster")["metadata"]["name"]
    defined.add(("Secret", f"{cluster}-default-user"))
    config = one("ConfigMap", "i2es-hub")["data"]
    for kind, spec in pod_specs().items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in defined, kind
        for container in containers(spec):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in defined, kind
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in defined, (kind, env["name"])
            # I2ES_HOME must be on the shared volume, not on the read-only root.
            state = [m["mountPath"] for m in container["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]]
            assert any(config["I2ES_HOME"].startswith(path + "/") for path in state), (kind, container["name"])
    assert urlsplit(config["I2ES_MANAGEMENT_URL"]).hostname == cluster
    postgres = one("Service", "i2es-postgres")["metadata"]["name"]
    for spec in pod_specs().values():
        (ledger,) = [e["value"] for e in spec["containers"][0]["env"] if e["name"] == "I2ES_LEDGER_URL"]
        assert urlsplit(ledger).hostname == postgres


# --- deploy/validate --------------------------------------------------------------------------


def test_validate_passes_with_the_tools_installed_here() -> None:
    venv = Path(os.environ.get("I2ES_VENV", DEPLOY.parent / ".venv")) / "bin"
    found = {
        name: shutil.which(name) or shutil.which(name, path=str(venv))
        for name in ("docker-compose", "hadolint", "systemd-analyze", "kubectl", "kubernetes-validate")
    }
    if not any(found.values()) and not shutil.which("docker"):
        pytest.skip("none of the validators deploy/validate uses is installed")
    result = subprocess.run(
        [str(DEPLOY / "validate")], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^validate: [1-9]\d* ran, 0 failed, \d+ skipped$", output, re.M), output
    if found["hadolint"]:
        assert "-- hadolint: ok" in output
    if found["systemd-analyze"]:
        assert "-- systemd-analyze verify: ok" in output
    if found["kubectl"]:
        assert "-- kubectl kustomize: ok" in output
    if found["kubernetes-validate"]:
        assert "-- kubernetes-validate --strict: ok" in output
