"""The Server resource: what to run, how to reach it, how many replicas."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from mcpctl.models.base import Labels, Model, Name, field_error

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_KEY = re.compile(r"^[-._A-Za-z0-9]+$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


class Transport(StrEnum):
    STDIO = "stdio"
    SSE = "sse"
    STREAMABLE_HTTP = "streamable-http"


class Runtime(StrEnum):
    NODE = "node"
    PYTHON = "python"


class Isolation(StrEnum):
    """Who shares a backend process: everyone (multiplexed), or one per principal or session
    (for servers that keep per-user state: logins, open files, a browser, a memory)."""

    SHARED = "shared"
    PRINCIPAL = "principal"
    SESSION = "session"


class Source(StrEnum):
    IMAGE = "image"
    PACKAGE = "package"
    COMMAND = "command"
    URL = "url"


def _quantity(value: str) -> str:
    if not QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a resource quantity such as 500m, 1, 256Mi or 1Gi")
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]


class SecretKeyRef(Model):
    """A reference to one key of a Secret; the value is resolved only where the server runs."""

    name: Name
    key: str = Field(min_length=1, max_length=253, pattern=SECRET_KEY.pattern)


class EnvVar(Model):
    name: str = Field(min_length=1, max_length=255, pattern=ENV_NAME.pattern)
    value: str | None = None
    secret_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _one_value(self) -> Self:
        if (self.value is None) == (self.secret_ref is None):
            raise field_error(
                "EnvVar", "value", f"env {self.name}: set exactly one of value, secretRef"
            )
        return self


class ResourceList(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Model):
    requests: ResourceList = Field(default_factory=ResourceList)
    limits: ResourceList = Field(default_factory=ResourceList)


class EgressRule(Model):
    """One destination a server's pods may reach (rendered into a NetworkPolicy)."""

    cidr: str = Field(pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    protocol: Literal["TCP", "UDP"] = "TCP"


class ServerSpec(Model):
    description: str = Field(default="", max_length=4096)
    transport: Transport = Transport.STDIO
    image: str | None = Field(default=None, min_length=1, max_length=512)
    package: str | None = Field(default=None, min_length=1, max_length=512)
    runtime: Runtime | None = None
    command: str | None = Field(default=None, min_length=1, max_length=4096)
    args: list[str] = Field(default_factory=list)
    url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+", max_length=2048)
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str | None = Field(default=None, pattern=r"^/[^\s]*$", max_length=1024)
    env: list[EnvVar] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=0, le=1000)
    isolation: Isolation = Isolation.SHARED
    # isolated backends: stopped after this long without a request, at most this many at once
    idle_seconds: int = Field(default=300, ge=1, le=86_400)
    max_instances: int = Field(default=50, ge=1, le=1000)
    resources: Resources = Field(default_factory=Resources)
    node_selector: Labels = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)
    egress: list[EgressRule] = Field(default_factory=list)

    @property
    def source(self) -> Source:
        if self.url is not None:
            return Source.URL
        if self.image is not None:
            return Source.IMAGE
        if self.package is not None:
            return Source.PACKAGE
        return Source.COMMAND

    @property
    def is_http(self) -> bool:
        return self.transport is not Transport.STDIO

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self._check_source()
        self._check_transport()
        names = [var.name for var in self.env]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise field_error("ServerSpec", f"env.{index}.name", f"duplicate env name {name}")
        return self

    def _check_source(self) -> None:
        given = [s for s in ("image", "package", "url") if getattr(self, s) is not None]
        if len(given) > 1:
            raise field_error(
                "ServerSpec",
                given[1],
                f"set exactly one source; got both {given[0]} and {given[1]}",
            )
        if not given and self.command is None:
            raise field_error(
                "ServerSpec", "image", "set exactly one source: image, package, command or url"
            )
        if self.command is not None and given and given[0] != "image":
            raise field_error(
                "ServerSpec", "command", f"command cannot be combined with {given[0]}"
            )
        if self.package is not None and self.runtime is None:
            raise field_error(
                "ServerSpec", "runtime", "runtime (node or python) is required with package"
            )
        if self.runtime is not None and self.package is None:
            raise field_error("ServerSpec", "runtime", "runtime is only valid with package")
        if self.url is not None and self.args:
            raise field_error("ServerSpec", "args", "args cannot be combined with url")

    def _check_transport(self) -> None:
        if not self.is_http:
            if self.url is not None:
                raise field_error(
                    "ServerSpec", "transport", "a url server must use sse or streamable-http"
                )
            for field in ("port", "path"):
                if getattr(self, field) is not None:
                    raise field_error(
                        "ServerSpec", field, f"{field} is only valid for HTTP transports"
                    )
            return
        if self.url is not None:
            for field in ("port", "path"):
                if getattr(self, field) is not None:
                    raise field_error(
                        "ServerSpec", field, f"{field} is part of url for a url server"
                    )
        elif self.port is None:
            raise field_error(
                "ServerSpec", "port", f"port is required for transport {self.transport}"
            )

    @property
    def http_path(self) -> str:
        """Path of the MCP endpoint on an HTTP server's port."""
        if self.path is not None:
            return self.path
        return "/sse" if self.transport is Transport.SSE else "/mcp"

    def secret_names(self) -> set[str]:
        return {var.secret_ref.name for var in self.env if var.secret_ref is not None}
