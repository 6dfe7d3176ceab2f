"""The Kubernetes orchestrator: server instances as pods in the data-plane namespace."""

from mcpctl.orchestrators.kubernetes.orchestrator import KubernetesConfig, KubernetesOrchestrator

__all__ = ["KubernetesConfig", "KubernetesOrchestrator"]
