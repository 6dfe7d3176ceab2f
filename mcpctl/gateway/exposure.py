"""A project's exposure and access rules, for one principal (pure; see models/exposure.py).

`tools/list` (and prompts, resources) shows a caller exactly what it may call, and a call of
anything else is answered as for a name that does not exist: nobody learns what is hidden
from them. Admins and the project's owner are bound by the exposure (it shapes the project)
but not by the access rules.

Listing and calling are one mapping read both ways, from names alone (a call does not know
the server's tool list): a tool is listed as `server__<its new name or its own>` and that
name resolves back to it, and to nothing else. A rename's new name therefore belongs to the
renamed tool even where the server has a tool of that name: that tool is hidden and cannot
be called, so no name is listed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
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

    @cached_property
    def _renamed_to(self) -> dict[str, dict[str, str]]:
        """Per server: exposed -> theirs, for the tools its renames name."""
        return {
            server: {new: old for old, new in shaping.tools.rename.items()}
            for server, shaping in self.expose.items()
        }

    def _allowed(self, kind: str, name: str) -> bool:
        if self.rules is None:
            return True
        return any(_matches(name, getattr(rule, kind)) for rule in self.rules)

    # -- tools -----------------------------------------------------------------------

    def tool(self, server: str, tool: dict[str, Any]) -> dict[str, Any] | None:
        """A server's tool as the project lists it to this caller, or None if hidden."""
        theirs = tool.get("name")
        if not isinstance(theirs, str):
            return None  # no name a call could give back
        shaping = self.expose[server].tools if server in self.expose else None
        exposed = theirs
        if shaping is not None:
            if not _passes(theirs, shaping):
                return None
            exposed = shaping.rename.get(theirs, theirs)
            if exposed == theirs and theirs in self._renamed_to[server]:
                return None  # another tool is renamed to its name: that name is the other's
        if not exposed:
            return None  # `server__` names nothing a call could reach
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
        theirs = self._renamed_to[server].get(exposed)
        if theirs is None:
            if exposed in shaping.rename:
                return None  # renamed away: reachable only by its new name
            theirs = exposed
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
