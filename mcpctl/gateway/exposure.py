"""A project's exposure and access rules, for one principal (pure; see models/exposure.py).

`tools/list` (and prompts, resources) shows a caller exactly what it may call, and a call of
anything else is answered as for a name that does not exist: nobody learns what is hidden
from them. Admins and the project's owner are bound by the exposure (it shapes the project)
but not by the access rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from mcpctl.models.exposure import AccessRule, Filter, ServerExposure, View
from mcpctl.models.members import EVERYONE, GROUP_PREFIX

SEPARATOR = "__"


def _matches(name: str, globs: list[str]) -> bool:
    return any(fnmatchcase(name, glob) for glob in globs)


def _passes(name: str, rules: Filter) -> bool:
    return (not rules.allow or _matches(name, rules.allow)) and not _matches(name, rules.deny)


@dataclass(frozen=True)
class Exposure:
    expose: dict[str, ServerExposure] = field(default_factory=dict)
    rules: list[AccessRule] | None = None  # the caller's rules; None: not bound by any
    view: View | None = None

    @classmethod
    def of(
        cls,
        spec: Any,
        email: str,
        groups: tuple[str, ...] = (),
        unbound: bool = False,
        view: View | None = None,
    ) -> Exposure:
        """The exposure of a project spec for a caller (`unbound`: an admin or the owner)."""
        access: list[AccessRule] = list(getattr(spec, "access", None) or [])
        mine = None
        if access and not unbound:
            names = {EVERYONE, email, *(GROUP_PREFIX + group for group in groups)}
            mine = [rule for rule in access if names & set(rule.members)]
        return cls(dict(getattr(spec, "expose", None) or {}), mine, view)

    def _allowed(self, kind: str, name: str) -> bool:
        if self.rules is None:
            return True
        return any(_matches(name, getattr(rule, kind)) for rule in self.rules)

    # -- tools -----------------------------------------------------------------------

    def tool(self, server: str, tool: dict[str, Any]) -> dict[str, Any] | None:
        """A server's tool as the project lists it to this caller, or None if hidden."""
        theirs = str(tool.get("name", ""))
        shaping = self.expose[server].tools if server in self.expose else None
        exposed = theirs
        if shaping is not None:
            if not _passes(theirs, shaping):
                return None
            exposed = shaping.rename.get(theirs, theirs)
        name = f"{server}{SEPARATOR}{exposed}"
        if not self._allowed("tools", name) or not self._in_view(name):
            return None
        shaped = {**tool, "name": name}
        if shaping is not None and exposed in shaping.descriptions:
            shaped["description"] = shaping.descriptions[exposed]
        return shaped

    def tool_source(self, name: str, servers: list[str]) -> tuple[str, str] | None:
        """The server and its own name for a tool the caller may call, else None."""
        server, _, exposed = name.partition(SEPARATOR)
        if server not in servers or not exposed:
            return None
        if not self._allowed("tools", name) or not self._in_view(name):
            return None
        shaping = self.expose[server].tools if server in self.expose else None
        if shaping is None:
            return server, exposed
        renamed = {new: old for old, new in shaping.rename.items()}
        theirs = renamed.get(exposed, exposed)
        if theirs == exposed and exposed in shaping.rename:
            return None  # renamed away: reachable only by its new name
        return (server, theirs) if _passes(theirs, shaping) else None

    def _in_view(self, name: str) -> bool:
        return self.view is None or _matches(name, self.view.tools)

    # -- prompts and resources -------------------------------------------------------

    def prompt(self, server: str | None, name: str) -> bool:
        """Whether the caller sees a prompt (`server` None: one of the project's own)."""
        if self.view is not None:
            return False  # a view serves tools only
        if server is None:
            return self._allowed("prompts", name)
        if server in self.expose and not _passes(name, self.expose[server].prompts):
            return False
        return self._allowed("prompts", f"{server}{SEPARATOR}{name}")

    def resource(self, server: str, uri: str) -> bool:
        if self.view is not None:
            return False
        if server in self.expose and not _passes(uri, self.expose[server].resources):
            return False
        return self._allowed("resources", uri)
