"""The data plane: MCP messages between gateway processes and host actors, off Ray's per-call
path. Each host serves a framed protocol on a socket of its own (`server`); every gateway
process holds one multiplexed connection per host (`client`). DESIGN.md says why."""
