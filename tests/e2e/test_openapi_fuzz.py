"""schemathesis fuzzes every operation in the OpenAPI document of a running mcpd, on each
database (SQLite, PostgreSQL): no 5xx and no traceback in mcpd's log. Its strings include NUL
and other control characters (PostgreSQL refuses NUL in text: a lookup with one was a 500).

It runs as its own CLI (`schemathesis run`), the way its authors ship it; its pytest
plugin does not load under the pytest this suite uses. tests/e2e/test_hostile_strings.py adds
strings chosen to hurt (lone surrogates, 1 MiB names, digits of other scripts).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray

from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.e2e.test_hostile_strings import scratch_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mcpd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mcpd]:
    start_ray()
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(scratch_database("mcpctl_openapi_fuzz"))
            env["MCPD_DATABASE_URL"] = url
        daemon = start_mcpd(tmp_path_factory.mktemp(f"fuzz-{request.param}") / "data", env)
        yield daemon
        stop_mcpd(daemon)


def test_no_operation_answers_5xx(mcpd: Mcpd, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{mcpd.url}/api/v1/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {mcpd.token}",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    document = httpx.get(f"{mcpd.url}/api/v1/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    assert f"Tested: {operations}" in run.stdout, summary
    log = mcpd.data_dir.parent / f"{mcpd.data_dir.name}.log"
    assert "Traceback" not in log.read_text(errors="replace"), log
