"""Who sends a message to a backend: the client session, its principal and its endpoint.

The multiplexer routes what a shared backend sends by it, so that nothing crosses tenants.
"""

from __future__ import annotations

from dataclasses import dataclass

# The sessions the gateway makes up for 2026-07-28 requests (which have none): one per request.
PER_REQUEST_PREFIX = "single-"


@dataclass(frozen=True)
class Caller:
    session: str
    principal: str
    endpoint: str  # "servers/<name>" or "projects/<name>"

    @property
    def per_request(self) -> bool:
        """A 2026-07-28 client: each request stands alone (no session, no back-channel)."""
        return self.session.startswith(PER_REQUEST_PREFIX)

    @property
    def tenant(self) -> tuple[str, str]:
        """What may share a message whose owner the backend did not name."""
        return (self.principal, self.endpoint)
