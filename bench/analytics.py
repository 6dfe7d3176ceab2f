"""Backup analytics at scale: 100 backups of 10,000 prompts and 500 servers each.

`python -m bench.analytics [--backups N] [--prompts N] [--servers N]`

The backups are generated into a temporary directory first (not timed), written the way
`mcpctl backup -o` writes them, and evolve from one to the next (replicas change, prompts are
added and removed), so the diff has something to find. Timed: what `mcpctl backup analyze`
does over all of them (validation, DuckDB load, summary), `diff` of the first and last, and
a join over all loaded backups.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import table
from mcpctl.backup import analytics

USERS, PROJECTS, TEMPLATES = 200, 100, 20
START = datetime(2026, 1, 1, tzinfo=UTC)
JOIN = """
    SELECT j.owner, count(*) AS prompts, count(DISTINCT p.backup_file) AS backups
    FROM prompts p JOIN projects j ON j.backup_file = p.backup_file AND j.name = p.project
    GROUP BY j.owner ORDER BY prompts DESC
"""


def day(index: int) -> str:
    return (START + timedelta(days=index)).isoformat().replace("+00:00", "Z")


def meta(name: str, index: int, project: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "createdAt": day(index), "updatedAt": day(index)}
    if project:
        found["project"] = project
    return found


def backup(index: int, prompts: int, servers: int) -> dict[str, Any]:
    """Backup number `index`: the same fleet a little later."""
    rng = random.Random(index)
    items: list[dict[str, Any]] = []
    for u in range(USERS):
        spec = {"displayName": f"User {u}", "role": "admin" if u < 3 else "member"}
        items.append({"kind": "User", "metadata": meta(f"user{u}@example.com", 0), "spec": spec})
    for s in range(servers):
        source: dict[str, Any] = (
            {"package": f"@example/server-{s}", "runtime": "node"}
            if s % 3 == 0
            else {"package": f"mcp-server-{s}", "runtime": "python"}
            if s % 3 == 1
            else {"command": f"/opt/mcp/server-{s}", "args": ["--stdio"]}
        )
        if s % 10 == 9:
            source = {"image": f"ghcr.io/example/server-{s}:1", "transport": "streamable-http"}
            source["port"] = 8000
        spec = {
            "description": f"server {s}",
            **source,
            "env": [
                {"name": "LOG_LEVEL", "value": rng.choice(["info", "debug"])},
                {"name": "API_TOKEN", "secretRef": {"name": f"server-{s}", "key": "token"}},
            ],
            "replicas": (s + index) % 4 if s % 50 else rng.randint(0, 9),
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
            "labels": {"team": f"team-{s % 7}"},
        }
        items.append({"kind": "Server", "metadata": meta(f"server-{s}", 0), "spec": spec})
    for t in range(TEMPLATES):
        spec = {
            "description": f"template {t}",
            "parameters": [{"name": f"p{n}"} for n in range(t % 4 + 1)],
            "server": {"package": "${p0}", "runtime": "python"},
        }
        items.append({"kind": "Template", "metadata": meta(f"template-{t}", 0), "spec": spec})
    for p in range(PROJECTS):
        spec = {
            "owner": f"user{p % USERS}@example.com",
            "servers": [f"server-{(p * 5 + k) % servers}" for k in range(5)],
            "members": [f"user{(p + k) % USERS}@example.com" for k in range(1, 4)],
        }
        items.append({"kind": "Project", "metadata": meta(f"project-{p}", 0), "spec": spec})
    for q in range(index * 50, index * 50 + prompts):  # 50 prompts retired, 50 new per backup
        spec = {
            "text": "Summarise {topic} for the team. " * (1 + q % 7),
            "arguments": [{"name": "topic", "required": True}],
            "owner": f"user{q % USERS}@example.com",
        }
        project = f"project-{q % PROJECTS}"
        items.append(
            {"kind": "Prompt", "metadata": meta(f"prompt-{q}", index, project), "spec": spec}
        )
    return {
        "format": "mcpctl-backup",
        "version": 1,
        "createdAt": day(index),
        "mcpdVersion": "0.1.0",
        "items": items,
    }


def timed(work: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backups", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--servers", type=int, default=500)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="mcpctl-bench-analytics-"))
    try:
        started = time.perf_counter()
        files = []
        for index in range(args.backups):
            path = directory / f"backup-{index:03d}.json"
            path.write_text(json.dumps(backup(index, args.prompts, args.servers), indent=2))
            files.append(str(path))
        generated = time.perf_counter() - started
        size = sum(Path(f).stat().st_size for f in files) / 2**20

        default_threshold = analytics.PARALLEL_MIN_BYTES
        analytics.PARALLEL_MIN_BYTES = 2**62
        _, serial = timed(lambda: analytics.validate(files))
        analytics.PARALLEL_MIN_BYTES = 0
        checked, parallel = timed(lambda: analytics.validate(files))
        backups, loaded = timed(lambda: analytics.Backups.checked(checked))
        with backups:
            _, summarised = timed(lambda: backups.summary())
            rows = backups.query(
                "SELECT (SELECT count(*) FROM prompts) + (SELECT count(*) FROM servers)"
            ).rows[0][0]
            joined, join = timed(lambda: backups.query(JOIN))
        result, diffed = timed(lambda: analytics.diff(files[0], files[-1]))
        analytics.PARALLEL_MIN_BYTES = default_threshold
        _, analyze = timed(lambda: analytics.summary(files))  # what `backup analyze` runs
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        changes = f"{len(result['added'])} added, {len(result['removed'])} removed, "
        changes += f"{len(result['changed'])} changed"
        print(
            table(
                ["analytics", "value"],
                [
                    [
                        "backups x (prompts + servers)",
                        f"{args.backups} x ({args.prompts:,} + {args.servers})",
                    ],
                    ["backup files on disk", f"{size:,.0f} MiB ({generated:.0f} s to generate)"],
                    ["validate all (format.parse), 1 process", f"{serial:.1f} s"],
                    ["validate all, worker processes", f"{parallel:.1f} s"],
                    [
                        "load into DuckDB (read_text + json_extract)",
                        f"{loaded:.1f} s ({rows:,} rows)",
                    ],
                    ["summary queries", f"{summarised:.2f} s"],
                    ["analyze, end to end (summary())", f"{analyze:.1f} s"],
                    [
                        "join prompts x projects by owner",
                        f"{join:.2f} s ({len(joined.rows)} owners)",
                    ],
                    ["diff first vs last backup", f"{diffed:.1f} s ({changes})"],
                    ["peak RSS", f"{peak:,.0f} MiB"],
                ],
            )
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
