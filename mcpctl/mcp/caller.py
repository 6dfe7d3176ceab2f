"""Who sends a message to a backend: the client session, its principal and its endpoint.

The multiplexer routes what a shared backend sends by it, so that nothing crosses tenants.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    session: str
    principal: str
    endpoint: str  # "servers/<name>" or "projects/<name>"

    @property
    def tenant(self) -> tuple[str, str]:
        """What may share a message whose owner the backend did not name."""
        return (self.principal, self.endpoint)
