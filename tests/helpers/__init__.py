"""What the tests would otherwise write again and again, one helper each:

- `waiting`: `until` (and `until_async`), polling until a check holds.
- `jsonrpc`: requests, tool calls, `initialize`, the 2026-07-28 envelope and headers, answers.
- `mcpd`: a running mcpd's REST API (instances, servers, members, metrics), the SDK client.
- `world`: the e2e world around one gateway: tests/servers, members' tokens, clients.
- `hosts`: a host without Ray for integration tests, and a gateway's link to its data plane.
- `k8s`: the test cluster: namespaces ready for pods, objects that may be gone.
- `chart`: the Helm chart rendered by `helm`, and the dashboards' queries.
- `postgres`, `processes`, `sockets`: databases of a test's own, /proc, raw connections.
"""
