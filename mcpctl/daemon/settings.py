"""mcpd's settings, from MCPD_* environment variables and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcpctl.gateway.oidc import OidcConfig, OidcVerifier, canonical
from mcpctl.gateway.resource_metadata import ResourceServer


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCPD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8420, ge=0, le=65535)
    data_dir: Path = Path("~/.local/share/mcpctl").expanduser()
    database_url: str | None = None
    admin_token: str | None = Field(default=None, repr=False)
    secret_key: str | None = Field(default=None, repr=False)
    orchestrator: Literal["local", "kubernetes"] = "local"
    resync_seconds: float = Field(default=30.0, gt=0)
    startup_timeout: float = Field(default=120.0, gt=0)
    actor_hosts: int | None = Field(default=None, ge=1)
    k8s_namespace: str = "mcpctl-servers"
    k8s_context: str | None = None
    node_selector: str = ""  # "k=v,k2=v2", applied to every pod
    runner_image: str = "ghcr.io/mcpctl/runner:0.1.0"
    # Bounds (DESIGN: everything is bounded).
    request_timeout: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024**2, ge=1024)
    max_restore_bytes: int = Field(default=256 * 1024**2, ge=1024)
    max_batch: int = Field(default=100, ge=1)
    max_notification_bytes: int = Field(default=64 * 1024, ge=1024)
    session_idle_seconds: float = Field(default=3600.0, gt=0)
    max_sessions_per_principal: int = Field(default=100, ge=1)
    shutdown_seconds: float = Field(default=15.0, ge=0)
    # HTTP connections: how many at once (more get 503), how long a request head may take to
    # arrive (and a body may pause), how long an idle keep-alive connection stays, head size.
    max_connections: int = Field(default=1000, ge=1)
    read_timeout: float = Field(default=10.0, gt=0)
    keep_alive_seconds: int = Field(default=5, ge=1)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # /metrics: on a port of its own (no token) when set, else on the main port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_require_token: bool = False
    # One of several mcpd replicas on one Ray cluster: the controller and hosts outlive any one.
    shared: bool = False
    # The deployment's name among Ray's actors; replicas of one deployment share it.
    deployment: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # Host actors and the controller run only on Ray nodes that advertise this resource.
    ray_host_resource: str | None = None
    # Joining RAY_ADDRESS: the address of this machine's Ray node, which mcpd connects through.
    ray_node_ip: str | None = None

    @property
    def node_selector_labels(self) -> dict[str, str]:
        pairs = [item.split("=", 1) for item in self.node_selector.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"MCPD_NODE_SELECTOR must be k=v[,k=v]: {self.node_selector!r}")
        return {key.strip(): value.strip() for key, value in pairs}

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # The audit trail (gateway/audit.py): kept this many days (0: for ever), written in batches.
    audit_enabled: bool = True
    audit_retention_days: float = Field(default=30.0, ge=0)
    audit_queue_size: int = Field(default=10_000, ge=1)
    audit_batch_size: int = Field(default=1000, ge=1)
    audit_flush_seconds: float = Field(default=0.5, gt=0)
    # Rate limits (gateway/rate_limit.py): each principal's calls per minute (0: none) and burst
    # (0: the per-minute number); tokens a replica leases from the shared bucket at most.
    rate_limit_per_minute: int = Field(default=0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)
    # Requests without a valid token, per source address (gateway/unauthenticated.py): refill
    # per second (0: unbounded) and burst.
    unauthenticated_per_second: float = Field(default=5.0, ge=0)
    unauthenticated_burst: int = Field(default=60, ge=1)
    rate_limit_chunk: int = Field(default=100, ge=1)
    # OAuth 2.1 resource server: JWT access tokens of this OpenID provider besides API tokens.
    oidc_issuer: str | None = None
    # Comma-separated; empty: the MCP endpoint's canonical URL (or MCPD_PUBLIC_URL itself).
    oidc_audience: str = ""
    oidc_email_claim: str = "email"
    # The boolean claim by which the provider vouches for the email; empty: every email it
    # issues is verified (only for providers that guarantee that, e.g. a company's directory).
    oidc_email_verified_claim: str = "email_verified"
    oidc_groups_claim: str = "groups"
    oidc_admin_groups: str = ""  # comma-separated: their members are admins
    oidc_scopes: str = "openid email offline_access"  # advertised to clients
    oidc_leeway_seconds: float = Field(default=30.0, ge=0)  # clock skew allowed on exp/nbf
    # mcpd's URL as clients reach it (behind a proxy); default: the URL a request came to.
    public_url: str | None = None

    def oauth(self) -> ResourceServer | None:
        """The resource server's configuration, or None without MCPD_OIDC_ISSUER."""
        if not self.oidc_issuer:
            return None
        config = OidcConfig(
            issuer=self.oidc_issuer,
            audiences=tuple(canonical(a) for a in _items(self.oidc_audience)),
            email_claim=self.oidc_email_claim,
            email_verified_claim=self.oidc_email_verified_claim,
            groups_claim=self.oidc_groups_claim,
            admin_groups=frozenset(_items(self.oidc_admin_groups)),
            scopes=tuple(self.oidc_scopes.split()),
            leeway_seconds=self.oidc_leeway_seconds,
        )
        return ResourceServer(OidcVerifier(config), self.public_url)

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_file}"

    @property
    def sqlite_file(self) -> Path:
        return self.data_dir.expanduser() / "mcpd.db"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir.expanduser() / "secret.key"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir.expanduser() / "admin-token"
