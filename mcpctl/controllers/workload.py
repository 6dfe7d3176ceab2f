"""From a Server spec to what an orchestrator runs: argv, env, ports (pure data)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from mcpctl.models.server import Runtime, ServerSpec, Source, Transport

PORT_PLACEHOLDERS = ("{port}", "${PORT}")


class WorkloadError(ValueError):
    """The spec cannot run here; the message becomes the instance's last error."""


@dataclass(frozen=True)
class Workload:
    server: str
    replica: int
    spec_hash: str
    source: Source
    transport: Transport
    argv: tuple[str, ...] = ()  # the process (package/command); an image's args
    image: str | None = None
    entrypoint: tuple[str, ...] = ()  # an image's command, when the spec overrides it
    env: dict[str, str] = field(default_factory=dict, repr=False)  # plain values
    secret_refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # var -> (secret, key)
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)  # when resolved here
    port: int | None = None
    path: str = "/mcp"
    url: str | None = None
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.server}-{self.replica}"


# What can change without replacing a running process.
NOT_HASHED = {"replicas", "description", "isolation", "idle_seconds", "max_instances"}


def spec_hash(spec: ServerSpec) -> str:
    """A stable hash of everything that needs a restart when it changes (not replicas)."""
    data = spec.model_dump(mode="json", exclude=NOT_HASHED)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def command_line(spec: ServerSpec) -> tuple[str, ...]:
    """The process to run for a package or command source (images carry their own)."""
    if spec.source is Source.PACKAGE:
        assert spec.package is not None
        if spec.runtime is Runtime.NODE:
            return ("npx", "-y", spec.package, *spec.args)
        return ("uvx", spec.package, *spec.args)
    if spec.source is Source.COMMAND:
        assert spec.command is not None
        return (spec.command, *spec.args)
    if spec.source is Source.IMAGE:
        return tuple(spec.args)
    return ()


def plain_env(spec: ServerSpec) -> dict[str, str]:
    return {var.name: var.value or "" for var in spec.env if var.secret_ref is None}


def secret_refs(spec: ServerSpec) -> dict[str, tuple[str, str]]:
    return {v.name: (v.secret_ref.name, v.secret_ref.key) for v in spec.env if v.secret_ref}


def resolve_secrets(spec: ServerSpec, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    env = {}
    for var in spec.env:
        if var.secret_ref is None:
            continue
        ref = var.secret_ref
        values = secrets.get(ref.name)
        if values is None:
            raise WorkloadError(f"env {var.name}: secret {ref.name!r} not found")
        if ref.key not in values:
            raise WorkloadError(f"env {var.name}: secret {ref.name!r} has no key {ref.key!r}")
        env[var.name] = values[ref.key]
    return env


def with_port(argv: tuple[str, ...], port: int) -> tuple[str, ...]:
    """Substitute `{port}` / `${PORT}` in arguments with the port the orchestrator chose."""
    result = []
    for arg in argv:
        for placeholder in PORT_PLACEHOLDERS:
            arg = arg.replace(placeholder, str(port))
        result.append(arg)
    return tuple(result)


def render(
    name: str, replica: int, spec: ServerSpec, secrets: dict[str, dict[str, str]] | None
) -> Workload:
    """`secrets` are mcpd's own, resolved here for the local orchestrator; None leaves the
    references for the place the server runs to resolve (Kubernetes Secrets)."""
    return Workload(
        server=name,
        replica=replica,
        spec_hash=spec_hash(spec),
        source=spec.source,
        transport=spec.transport,
        argv=command_line(spec),
        image=spec.image,
        entrypoint=(spec.command,) if spec.image and spec.command else (),
        env=plain_env(spec),
        secret_refs=secret_refs(spec),
        secret_values=resolve_secrets(spec, secrets) if secrets is not None else {},
        port=spec.port,
        path=spec.http_path,
        url=spec.url,
        resources=spec.resources.model_dump(exclude_none=True),
        labels=dict(spec.labels),
        node_selector=dict(spec.node_selector),
    )
