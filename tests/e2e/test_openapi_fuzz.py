"""schemathesis fuzzes every operation in the OpenAPI document of a running mcpd: no 5xx.

It runs as its own CLI (`schemathesis run`), the way its authors ship it; its pytest
plugin does not load under the pytest this suite uses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.conftest import Mcpd


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
