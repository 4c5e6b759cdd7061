"""Static checks of the Kubernetes manifests.

Cross-checked against each other, against the Dockerfile's user and against
`cache.config`; kustomize and the API schema when the tools are there. Reads files only.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from cache.config import Config, build_config
from tests.support.deploy_files import (
    K8S,
    MiB,
    cache_env,
    config_env_names,
    dockerfile_uid,
    size_bytes,
)


def _k8s_documents() -> dict[tuple[str, str], dict[str, Any]]:
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                key = (document["kind"], document["metadata"]["name"])
                assert key not in documents, f"{key} defined twice"
                documents[key] = document
    return documents


def _deployment() -> dict[str, Any]:
    return _k8s_documents()[("Deployment", "query-cache")]


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _deployment()["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    containers = _pod_spec()["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _container_port(port: int | str) -> int:
    """A port given by number or by name, as a container port number."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert port in by_name, f"no container port named {port!r}"
    return int(by_name[port])


def _configmap_toml() -> dict[str, Any]:
    configmap = _k8s_documents()[("ConfigMap", "query-cache-config")]
    return tomllib.loads(configmap["data"]["config.toml"])


def _k8s_literal_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container().get("env", []) if "value" in e}


def _k8s_config() -> Config:
    return build_config(_configmap_toml(), env=cache_env(_k8s_literal_env()))


def _memory_mounts() -> dict[str, int]:
    """Mount paths of memory-backed emptyDirs, with their size limits."""
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    mounts = {}
    for mount in _container()["volumeMounts"]:
        empty_dir = volumes[mount["name"]].get("emptyDir")
        if empty_dir is not None and empty_dir.get("medium") == "Memory":
            mounts[mount["mountPath"]] = size_bytes(empty_dir["sizeLimit"])
    return mounts


def _under(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert resources == {name for name in manifests if ".example." not in name}


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: kustomize build not checked")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds


def test_k8s_manifests_match_the_api_schema() -> None:
    validator = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate not installed: schemas not checked"
    )
    for document in _k8s_documents().values():
        validator.validate(document, "1.30.0", strict=True)


def test_configmap_config_is_valid() -> None:
    config = build_config(_configmap_toml(), env={})
    assert config.server.port == _container_port("http")
    assert config.ops.port == _container_port("ops")


def test_k8s_env_names_are_config_keys() -> None:
    names = {e["name"] for e in _container().get("env", []) if e["name"].startswith("CACHE_")}
    assert names, "the Deployment sets no CACHE_* variable"
    assert names <= config_env_names(), names - config_env_names()
    _k8s_config()


def test_k8s_args_read_the_configmap() -> None:
    args = _container()["args"]
    config_path = args[args.index("--config") + 1]
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    for mount in _container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            assert volume["configMap"]["name"] == "query-cache-config"
            assert mount.get("readOnly") is True
            items = volume["configMap"]["items"]
            paths = [f"{mount['mountPath']}/{item['path']}" for item in items]
            assert config_path in paths
            return
    pytest.fail("no configMap volume is mounted")


def test_k8s_probes_match_service_ports() -> None:
    container = _container()
    config = _k8s_config()
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    assert _container_port(liveness["port"]) == config.server.port
    assert _container_port(readiness["port"]) == config.server.port
    public = _k8s_documents()[("Service", "query-cache")]
    targets = {_container_port(p["targetPort"]) for p in public["spec"]["ports"]}
    assert targets == {config.server.port}


def test_k8s_ops_port_is_not_public() -> None:
    ops_port = _k8s_config().ops.port
    for (kind, name), document in _k8s_documents().items():
        if kind != "Service":
            continue
        spec = document["spec"]
        targets = {_container_port(p.get("targetPort", p["port"])) for p in spec["ports"]}
        if ops_port in targets:
            assert spec.get("type", "ClusterIP") == "ClusterIP", f"Service {name} exposes ops"
            assert name != "query-cache", "the public Service must not carry the ops port"


def test_k8s_security_context() -> None:
    pod = _pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == dockerfile_uid()
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    container = _container()["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert not container.get("capabilities", {}).get("add")
    assert _pod_spec().get("automountServiceAccountToken") is False


def test_k8s_writable_storage_is_ram_only() -> None:
    memory = _memory_mounts()
    assert memory, "no emptyDir with medium: Memory is mounted"
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    for mount in _container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        read_only = mount.get("readOnly") is True
        assert read_only or mount["mountPath"] in memory, (
            f"{mount['mountPath']} is writable and not a memory-backed emptyDir"
        )
        assert not {"persistentVolumeClaim", "hostPath"} & set(volume)
    config = _k8s_config()
    tmpdir = _k8s_literal_env().get("TMPDIR", "/tmp")
    assert any(_under(tmpdir, folder) for folder in memory), f"TMPDIR {tmpdir} is not in RAM"
    if config.storage.backend == "tmpfs":
        folders = [f for f in memory if _under(config.storage.path, f)]
        assert folders, f"storage.path {config.storage.path} is not on a memory emptyDir"
        assert memory[folders[0]] >= config.storage.max_bytes


def test_k8s_memory_limit_covers_storage() -> None:
    config = _k8s_config()
    resources = _container()["resources"]
    limit = size_bytes(resources["limits"]["memory"])
    assert limit > config.storage.max_bytes + 512 * MiB
    assert size_bytes(resources["requests"]["memory"]) <= limit


def test_k8s_termination_grace_covers_shutdown() -> None:
    grace = _pod_spec()["terminationGracePeriodSeconds"]
    assert grace > _k8s_config().server.shutdown_timeout


def test_k8s_scrape_annotations() -> None:
    annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == _k8s_config().ops.port


def test_k8s_selectors_match_pod_labels() -> None:
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    selector = _deployment()["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    for (kind, name), document in _k8s_documents().items():
        if kind == "Service":
            assert document["spec"]["selector"].items() <= labels.items(), name
        if kind == "NetworkPolicy":
            assert document["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_k8s_admin_token_comes_from_a_secret() -> None:
    env = {e["name"]: e for e in _container().get("env", [])}
    token = env.get("CACHE_OPS_ADMIN_TOKEN")
    if token is not None:
        assert "value" not in token, "never put the admin token in the manifest"
        assert "secretKeyRef" in token["valueFrom"]
    assert not _configmap_toml().get("ops", {}).get("admin_token")
