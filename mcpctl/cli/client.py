"""A thin HTTP client of the REST API that turns every failure into one CLIError line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from mcpctl.cli.errors import CLIError
from mcpctl.cli.settings import Target


class Client:
    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        self.target = target
        self._http = httpx.Client(base_url=target.server, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise CLIError(f"cannot reach mcpd at {self.target.server}: {error}") from None
        if response.status_code >= 400:
            raise CLIError(_message(response))
        return response

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[Iterator[str]]:
        """A response read as it arrives (for `logs -f`); errors as CLIError lines."""
        try:
            with self._http.stream(method, path, timeout=None, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CLIError(_message(response))
                yield response.iter_text()
        except httpx.HTTPError as error:
            raise CLIError(f"cannot reach mcpd at {self.target.server}: {error}") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.request("PUT", path, json=body)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()[:200] or response.reason_phrase
    if response.status_code == 401:
        message += " (set a token: mcpctl config set-server URL --token T, or MCPCTL_TOKEN)"
    return f"{message} (HTTP {response.status_code})"
