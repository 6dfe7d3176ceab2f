"""One repository per kind: documents in, documents out."""

from __future__ import annotations

from mcpctl.models.kinds import Kind
from mcpctl.store.repositories.base import Outcome, Repository
from mcpctl.store.repositories.projects import PROJECTS, PROMPTS
from mcpctl.store.repositories.secrets import SecretRepository
from mcpctl.store.repositories.specs import SERVERS, TEMPLATES, USERS
from mcpctl.store.secretbox import SecretBox

__all__ = ["Outcome", "Repository", "repositories"]


def repositories(box: SecretBox) -> dict[Kind, Repository]:
    return {
        repo.kind: repo
        for repo in (USERS, SecretRepository(box), SERVERS, TEMPLATES, PROJECTS, PROMPTS)
    }
