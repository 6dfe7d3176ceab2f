"""mcpd: the daemon (gateway + controllers)."""

from mcpctl.daemon.main import main

__all__ = ["main"]
