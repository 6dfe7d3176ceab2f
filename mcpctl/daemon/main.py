"""`mcpd`: migrate the store, bootstrap the admin, serve the gateway."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.types import ASGIApp

from mcpctl.actors.heap import settle_heap
from mcpctl.actors.host import HostConfig
from mcpctl.actors.ray_cluster import init_ray
from mcpctl.daemon.assembly import assemble
from mcpctl.daemon.data_dir import create_private_file, make_private
from mcpctl.daemon.http_protocol import bounded_http
from mcpctl.daemon.settings import Settings
from mcpctl.daemon.shutdown import (
    BACKSTOP_SECONDS,
    GracefulServer,
    SecondaryServer,
    ShutdownGate,
    serve_all,
)
from mcpctl.gateway.audit import AuditConfig
from mcpctl.gateway.limits import Limits
from mcpctl.gateway.metrics_endpoint import metrics_app
from mcpctl.gateway.rate_limit import RateLimitConfig
from mcpctl.gateway.unauthenticated import SourceLimits
from mcpctl.observability import tracing
from mcpctl.orchestrators.kubernetes.connection import ContextError, check_context
from mcpctl.orchestrators.kubernetes.orchestrator import KubernetesConfig
from mcpctl.store import tokens
from mcpctl.store.database import Database, migrate, startup_lock
from mcpctl.store.secretbox import SecretBox

log = logging.getLogger("mcpd")
METRICS_CONNECTIONS = 16  # scrapers, not clients
cli = typer.Typer(add_completion=False, help="mcpd: the mcpctl daemon (gateway + controllers).")


def open_database(settings: Settings) -> tuple[Database, str | None]:
    """Migrate and bootstrap; return the database and a newly created admin token."""
    make_private(settings.data_dir.expanduser())
    if not settings.database_url:
        create_private_file(settings.sqlite_file)
    database = Database(settings.database)
    with startup_lock(database.engine):
        migrate(database.engine)
        with database.transaction() as session:
            new_token = tokens.bootstrap(session, settings.admin_token)
    return database, new_token


def secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    return SecretBox.from_key_file(settings.secret_key_file).key


def save_admin_token(path: Path, token: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [MCPD_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [MCPD_PORT].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the SQLite file and keys live [MCPD_DATA_DIR].")
    ] = None,
) -> None:
    overrides: dict[str, object] = {"host": host, "port": port, "data_dir": data_dir}
    try:
        settings = Settings().model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as error:
        detail = error.errors()[0]
        typer.echo(f"mcpd: MCPD_{str(detail['loc'][0]).upper()}: {detail['msg']}", err=True)
        raise typer.Exit(1) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Refuse a wrong cluster before touching anything (the database included).
    kubernetes = None
    if settings.orchestrator == "kubernetes":
        try:
            check_context(settings.k8s_context)
            kubernetes = KubernetesConfig(
                namespace=settings.k8s_namespace,
                context=settings.k8s_context,
                kubeconfig=os.environ.get("KUBECONFIG"),
                runner_image=settings.runner_image,
                node_selector=settings.node_selector_labels,
            )
        except (ContextError, ValueError) as error:
            typer.echo(f"mcpd: {error}", err=True)
            raise typer.Exit(1) from None
    try:
        database, new_token = open_database(settings)
    except Exception as error:  # a bad URL or an unreachable database: one line, exit 1
        typer.echo(f"mcpd: cannot open the database: {error}".splitlines()[0], err=True)
        raise typer.Exit(1) from None
    if new_token is not None:
        save_admin_token(settings.admin_token_file, new_token)
        print(
            f"mcpd: created the admin token (shown once; saved to {settings.admin_token_file}):\n"
            f"  {new_token}",
            file=sys.stderr,
            flush=True,
        )
    host_config = HostConfig(
        index=0,
        database_url=settings.database,
        secret_key=secret_key(settings),
        data_dir=str(settings.data_dir),
        orchestrator=settings.orchestrator,
        startup_timeout=settings.startup_timeout,
        request_timeout=settings.request_timeout,
        host_resource=settings.ray_host_resource,
        kubernetes=kubernetes,
        telemetry=tracing.environment(),  # tracing hook: hosts get mcpd's OTEL_* variables
    )
    tracing.configure("gateway")  # tracing hook: on only when OTEL_* name an exporter
    app, _ = assemble(
        database,
        host_config,
        settings.resync_seconds,
        settings.actor_hosts,
        namespace=settings.deployment or f"mcpd-{settings.port}",
        shared=settings.shared,
        oauth=settings.oauth(),
        audit=AuditConfig(
            enabled=settings.audit_enabled,
            retention_days=settings.audit_retention_days,
            queue_size=settings.audit_queue_size,
            batch_size=settings.audit_batch_size,
            flush_seconds=settings.audit_flush_seconds,
        ),
        rate_limits=RateLimitConfig(
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
            max_chunk=settings.rate_limit_chunk,
        ),
        source_limits=SourceLimits(
            per_second=settings.unauthenticated_per_second, burst=settings.unauthenticated_burst
        ),
        limits=Limits(
            request_timeout=settings.request_timeout,
            max_body_bytes=settings.max_body_bytes,
            max_restore_bytes=settings.max_restore_bytes,
            max_batch=settings.max_batch,
            max_notification_bytes=settings.max_notification_bytes,
            session_idle_seconds=settings.session_idle_seconds,
            max_sessions_per_principal=settings.max_sessions_per_principal,
            # With a metrics port of its own, /metrics on the main port needs a token.
            metrics_require_token=settings.metrics_require_token
            or settings.metrics_port is not None,
        ),
    )
    # Ray first: uvicorn then installs its signal handlers over Ray's, so SIGTERM is graceful.
    init_ray(settings.data_dir.expanduser(), settings.ray_node_ip)
    log.info("mcpd listening on http://%s:%d", settings.host, settings.port)
    if settings.oidc_issuer and not settings.public_url:
        log.warning(
            "MCPD_OIDC_ISSUER without MCPD_PUBLIC_URL: the audience a token must carry follows "
            "the request's Host header; set MCPD_PUBLIC_URL so that a token minted for another "
            "resource of the same provider can never be presented here"
        )
    settle_heap()
    try:
        serve_http(app, settings)
    finally:
        tracing.shutdown()  # tracing hook: export what is buffered


def http_config(app: ASGIApp, settings: Settings, port: int, connections: int) -> uvicorn.Config:
    """uvicorn bounded (DESIGN: everything is bounded): connections, request heads and bodies
    that stall, idle keep-alive connections, header size, and the stop."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_level=settings.log_level,
        http=bounded_http(settings.read_timeout, settings.max_header_bytes),
        loop="uvloop",
        limit_concurrency=connections,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_seconds + BACKSTOP_SECONDS),
    )


def serve_http(app: Starlette, settings: Settings) -> None:
    """The gateway on MCPD_PORT and, with MCPD_METRICS_PORT, /metrics alone on that port
    (no token); SIGTERM stops both within MCPD_SHUTDOWN_SECONDS (+ a short backstop)."""
    others: list[uvicorn.Server] = []
    if settings.metrics_port is not None:
        config = http_config(metrics_app(app), settings, settings.metrics_port, METRICS_CONNECTIONS)
        others.append(SecondaryServer(config))
    gate = ShutdownGate(app)
    config = http_config(gate, settings, settings.port, settings.max_connections)
    main = GracefulServer(config, gate, settings.shutdown_seconds, others)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve_all(main, others))


def main() -> None:
    cli()
