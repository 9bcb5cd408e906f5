"""The agent finds its cluster from a kubeconfig context or from the pod's environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runq.agent.infrastructure import InfrastructureError
from runq.agent.infrastructure.kubernetes import (
    api_client_for,
)
from runq.broker import KubernetesInfrastructure as Settings

# ---- cluster config -------------------------------------------------------------------


def kubeconfig(path: Path) -> Path:
    clusters = [
        {"name": name, "cluster": {"server": f"https://{name}.example.com:6443"}}
        for name in ("one", "two")
    ]
    contexts = [
        {"name": name, "context": {"cluster": name, "user": "me"}} for name in ("one", "two")
    ]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "one",
                "clusters": clusters,
                "contexts": contexts,
                "users": [{"name": "me", "user": {"token": "secret-token"}}],
            }
        )
    )
    return path


def test_kubeconfig_with_its_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = kubeconfig(tmp_path / "config")
    assert (
        api_client_for(Settings(kubeconfig=str(path))).configuration.host
        == "https://one.example.com:6443"
    )
    chosen = api_client_for(
        Settings(cluster_config="kubeconfig", kubeconfig=str(path), context="two")
    )
    assert chosen.configuration.host == "https://two.example.com:6443"
    with pytest.raises(InfrastructureError, match="kubeconfig"):
        api_client_for(Settings(kubeconfig=str(path), context="three"))


def test_in_cluster_when_the_pod_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("pod-token")
    ca.write_text("not really a certificate")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    configuration = api_client_for(Settings()).configuration  # auto
    assert configuration.host == "https://10.96.0.1:443"
    assert "pod-token" in str(configuration.api_key)
    token.unlink()
    with pytest.raises(InfrastructureError, match="in-cluster"):
        api_client_for(Settings(cluster_config="in-cluster"))
