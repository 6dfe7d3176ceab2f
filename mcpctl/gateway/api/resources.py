"""Create, read, replace and delete for every kind, generated from the kind registry."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation, json_body
from mcpctl.gateway.api.params import Email, Name, Params
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.base import Model, field_error
from mcpctl.models.kinds import PROMPT, SERVER, Kind, Resource
from mcpctl.models.user import normalise_email
from mcpctl.store.errors import ConcurrentWrite, Conflict, NotFound
from mcpctl.store.repositories import Outcome, Repository
from mcpctl.store.repositories.instances import list_instances

OUTCOME_HEADER = "Mcpctl-Outcome"


class ResourceList(Model):
    kind: str
    items: list[dict[str, Any]]


def to_json(resource: Resource[Any]) -> dict[str, Any]:
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)


def _with_status(session: Session, resource: Resource[Any]) -> Resource[Any]:
    if resource.kind == SERVER.name:
        instances = list_instances(session, resource.metadata.name)
        resource.status = {
            "replicas": resource.spec.replicas,
            "ready": sum(1 for i in instances if i.status == "RUNNING"),
            "instances": [
                i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in instances
            ],
        }
    return resource


class ProjectParams(Params):
    project: Name


class NameParams(Params):
    name: Name


class ScopedParams(ProjectParams, NameParams):
    pass


class EmailParams(Params):
    name: Email  # the stored form: `Alice@Example.COM` names alice@example.com


def _item_params(kind: Kind) -> type[NameParams | EmailParams]:
    if kind.named_by_email:
        return EmailParams
    return ScopedParams if kind.scoped else NameParams


def _located(kind: Kind, request: Request) -> tuple[str | None, str | None]:
    """The validated `{name}` and `{project}` of the URL (None where the path has none)."""
    project = ProjectParams.of(request).project if "project" in request.path_params else None
    name = _item_params(kind).of(request).name if "name" in request.path_params else None
    return name, project


def _parse(kind: Kind, raw: Any, request: Request) -> Resource[Any]:
    name, project = _located(kind, request)
    if kind.scoped and isinstance(raw, dict):
        metadata = raw.setdefault("metadata", {})
        if isinstance(metadata, dict) and metadata.setdefault("project", project) != project:
            raise field_error("Resource", "metadata.project", "does not match the URL")
    resource = kind.parse(raw)
    given = resource.metadata.name
    if kind.named_by_email:
        given = normalise_email(given)
    if name is not None and given != name:
        raise field_error(
            "Resource", "metadata.name", "does not match the URL", resource.metadata.name
        )
    return resource


def _own_prompt(principal: Principal, resource: Resource[Any]) -> None:
    """Members' prompts are theirs: the owner is who writes them."""
    if resource.kind == PROMPT.name and not principal.is_admin:
        owner = resource.spec.owner
        if owner is not None and normalise_email(owner) != principal.email:
            raise policy.forbidden("members may not create prompts for others")
        resource.spec.owner = principal.email


def _authorize_write(
    session: Session,
    principal: Principal,
    repo: Repository,
    name: str,
    project: str | None,
) -> Resource[Any] | None:
    """Check the principal may write `name`; return what exists now."""
    kind = repo.kind
    try:
        existing = repo.get(session, name, project)
    except NotFound:
        existing = None
    if kind is PROMPT:
        assert project is not None
        policy.require_prompt_write(session, principal, project, existing)
    else:
        policy.require_admin(principal, f"change {kind.plural}")
    return existing


def operations(kind: Kind) -> list[Operation]:
    base = (
        f"/api/v1/projects/{{project}}/{kind.plural}" if kind.scoped else f"/api/v1/{kind.plural}"
    )
    item = f"{base}/{{name}}"
    document = Resource[kind.spec]  # type: ignore[name-defined]
    label = kind.name.lower()
    located = _item_params(kind)
    listed = ProjectParams if kind.scoped else None

    async def list_items(request: Request, principal: Principal) -> Response:
        policy.require_read_kind(principal, kind)
        _, project = _located(kind, request)

        def work(session: Session) -> list[dict[str, Any]]:
            repo = context_of(request).repositories[kind]
            if project is not None:
                policy.require_project_visible(session, principal, project)
            items = repo.list(session, project)
            return [
                to_json(_with_status(session, r))
                for r in items
                if policy.can_read(session, principal, r)
            ]

        items = await context_of(request).transaction(work)
        return JSONResponse({"kind": f"{kind.name}List", "items": items})

    async def get_item(request: Request, principal: Principal) -> Response:
        policy.require_read_kind(principal, kind)
        name, project = _located(kind, request)
        assert name is not None

        def work(session: Session) -> dict[str, Any]:
            if project is not None:
                policy.require_project_visible(session, principal, project)
            resource = context_of(request).repositories[kind].get(session, name, project)
            if not policy.can_read(session, principal, resource):
                raise NotFound(f"{label} {name!r} not found")
            return to_json(_with_status(session, resource))

        return JSONResponse(await context_of(request).transaction(work))

    async def write(request: Request, principal: Principal, create_only: bool) -> Response:
        context = context_of(request)
        resource = _parse(kind, await json_body(request), request)
        _own_prompt(principal, resource)
        name, project = resource.metadata.name, resource.metadata.project

        def work(session: Session) -> tuple[Outcome, dict[str, Any]]:
            repo = context.repositories[kind]
            existing = _authorize_write(session, principal, repo, name, project)
            if create_only and existing is not None:
                raise Conflict(f"{label} {name!r} already exists")
            outcome = repo.put(session, resource, principal.email)
            if create_only and outcome is not Outcome.CREATED:  # created since the check above
                raise Conflict(f"{label} {name!r} already exists")
            return outcome, to_json(_with_status(session, repo.get(session, name, project)))

        try:
            outcome, body = await context.transaction(work)
        except ConcurrentWrite:
            if create_only:
                raise
            # A concurrent request created it after this one looked: apply again, now as an
            # update of what that request committed.
            outcome, body = await context.transaction(work)
        if outcome is not Outcome.UNCHANGED:
            context.changed(kind, name)  # a user's role or a project's members may have too
        status = 201 if outcome is Outcome.CREATED else 200
        return JSONResponse(body, status_code=status, headers={OUTCOME_HEADER: outcome.value})

    async def create(request: Request, principal: Principal) -> Response:
        return await write(request, principal, create_only=True)

    async def replace(request: Request, principal: Principal) -> Response:
        return await write(request, principal, create_only=False)

    async def delete(request: Request, principal: Principal) -> Response:
        context = context_of(request)
        name, project = _located(kind, request)
        assert name is not None

        def work(session: Session) -> None:
            repo = context.repositories[kind]
            if _authorize_write(session, principal, repo, name, project) is None:
                raise NotFound(f"{label} {name!r} not found")
            repo.delete(session, name, project)

        await context.transaction(work)
        context.changed(kind, name)  # the user and their tokens may be gone
        return Response(status_code=204)

    tag = kind.plural
    every_project = (
        [
            Operation(
                "GET",
                f"/api/v1/{kind.plural}",
                list_items,
                f"list {kind.plural} of every project",
                tag,
                responses={200: ResourceList},
            )
        ]
        if kind.scoped
        else []
    )
    return [
        *every_project,
        Operation(
            "GET",
            base,
            list_items,
            f"list {kind.plural}",
            tag,
            responses={200: ResourceList},
            params=listed,
        ),
        Operation(
            "POST",
            base,
            create,
            f"create {label}",
            tag,
            body=document,
            responses={201: document},
            params=listed,
        ),
        Operation(
            "GET", item, get_item, f"get {label}", tag, responses={200: document}, params=located
        ),
        Operation(
            "PUT",
            item,
            replace,
            f"apply {label}",
            tag,
            body=document,
            responses={200: document, 201: document},
            params=located,
        ),
        Operation(
            "DELETE", item, delete, f"delete {label}", tag, responses={204: None}, params=located
        ),
    ]
