"""mcpctl: a control plane and gateway for Model Context Protocol servers."""

__version__ = "0.1.0"
