"""The images mcpd and its servers run in (docker/): built in stages, run as a user, with an
init that keeps a runner pod alive on mcpd's args."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mcpctl.controllers.manifests import KEEP_ALIVE
from tests.helpers.chart import REPO


def stages(dockerfile: Path) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split into build stages."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    result: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_mcpd_image_is_multi_stage_non_root_without_build_tools() -> None:
    build, *_, final = stages(REPO / "docker" / "mcpd.Dockerfile")
    assert len(stages(REPO / "docker" / "mcpd.Dockerfile")) >= 2
    assert any("pip install" in line or "uv pip install" in line for line in build)
    text = "\n".join(final)
    assert "pip install" not in text and "apt-get install" not in text
    assert not re.search(r"\b(gcc|build-essential|make|git)\b", text)
    assert re.search(r"^COPY --from=\S+ /opt/mcpd /opt/mcpd$", text, re.M)
    [user] = [line for line in final if line.startswith("USER ")]
    assert re.fullmatch(r"USER 10001(:10001)?", user)
    assert 'ENTRYPOINT ["mcpd"]' in final
    ignore = (REPO / "docker" / "mcpd.Dockerfile.dockerignore").read_text().split()
    assert ignore[0] == "*" and {"!pyproject.toml", "!README.md", "!mcpctl/"} <= set(ignore)


def test_runner_image_keeps_the_pod_alive_with_mcpds_args() -> None:
    [*_, final] = stages(REPO / "docker" / "runner.Dockerfile")
    entrypoint = json.loads(next(x for x in final if x.startswith("ENTRYPOINT "))[11:])
    cmd = json.loads(next(x for x in final if x.startswith("CMD "))[4:])
    # mcpd sets args ["sleep", "infinity"] and keeps the entrypoint: an init that runs its args.
    assert entrypoint[-1] == "--" and "tini" in entrypoint[0]
    assert cmd == KEEP_ALIVE
    # npx from the node base image, uvx from uv's, a Python for uvx to run packages with.
    text = (REPO / "docker" / "runner.Dockerfile").read_text()
    assert re.search(r"^ARG NODE_IMAGE=node:\S+$", text, re.M)
    assert "COPY --from=uv /uv /uvx /usr/local/bin/" in text and " python3 " in text
    [user] = [line for line in final if line.startswith("USER ")]
    assert re.fullmatch(r"USER 10001(:10001)?", user)
