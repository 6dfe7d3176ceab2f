"""Fetching the OpenID provider's keys from a slow provider (issue 18, defect 5).

A real HTTP server on loopback plays a provider whose JWKS endpoint trickles its answer a few
bytes at a time. Before: the 10 s read timeout restarted with every byte (a 20 s fetch), and
tokens with unknown key ids each fetched again, one after another, while holding the lock (28,
48, 68 s). Now a fetch has a total deadline, one fetch is in flight at a time for everyone,
none starts within `refresh_seconds` of the last one's end, and a made-up key id is refused at
once while a fetch is pending.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mcpctl.gateway.oidc import OidcConfig, OidcVerifier, TokenRefused


@dataclass
class SlowProvider:
    """Discovery answers at once; the JWKS comes `chunk` bytes every `pause` seconds."""

    pause: float = 0.0
    chunk: int = 1 << 20
    jwks_requests: int = 0
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    issuer: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            while (await reader.readline()).strip():
                pass  # headers
            path = line.split()[1].decode()
            if path.endswith("/openid-configuration"):
                body = json.dumps({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"})
                await self._answer(writer, body.encode(), 0.0)
            else:
                self.jwks_requests += 1
                jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
                body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})
                await self._answer(writer, body.encode(), self.pause)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, body: bytes, pause: float) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n")
        for start in range(0, len(body), self.chunk):
            writer.write(body[start : start + self.chunk])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)

    def token(self, kid: str = "k1") -> str:
        claims = {
            "iss": self.issuer,
            "sub": "alice-1",
            "exp": int(time.time()) + 300,
            "email": "alice@example.com",
            "email_verified": True,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
async def provider() -> AsyncIterator[SlowProvider]:
    slow = SlowProvider()
    server = await asyncio.start_server(slow.serve, "127.0.0.1", 0)
    slow.issuer = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield slow
    server.close()


def verifier(provider: SlowProvider, **config: Any) -> OidcVerifier:
    return OidcVerifier(OidcConfig(issuer=provider.issuer, leeway_seconds=0, **config))


async def outcome(check: OidcVerifier, token: str) -> tuple[str, float]:
    began = time.monotonic()
    try:
        await check.verify(token)
        return "ok", time.monotonic() - began
    except TokenRefused as refused:
        return refused.reason, time.monotonic() - began


async def test_a_trickled_answer_ends_at_the_deadline_not_at_its_last_byte(
    provider: SlowProvider,
) -> None:
    provider.pause, provider.chunk = 0.2, 8  # ~1 KiB of JWKS at 40 bytes/s: ~25 s in all
    check = verifier(provider, http_timeout=1.0)
    reason, took = await asyncio.wait_for(outcome(check, provider.token()), 10)
    assert reason == "issuer_unavailable"
    assert took < 5, took  # before: every byte restarted the read timeout
    print(f"\ntrickled JWKS: refused after {took:.2f} s (deadline 1 s)")


async def test_unknown_key_ids_share_one_fetch_and_are_refused_at_once_while_it_runs(
    provider: SlowProvider,
) -> None:
    check = verifier(provider, http_timeout=3.0, refresh_seconds=0.2)
    assert (await outcome(check, provider.token()))[0] == "ok"  # keys known
    assert provider.jwks_requests == 1
    await asyncio.sleep(0.3)  # past refresh_seconds: the next unknown kid may fetch
    provider.pause, provider.chunk = 0.05, 64  # a slow provider: ~1 s for the JWKS
    made_up = [provider.token(kid=f"made-up-{n}") for n in range(20)]
    first = asyncio.ensure_future(outcome(check, made_up[0]))
    await asyncio.sleep(0.1)  # its fetch is in flight
    others = await asyncio.gather(*(outcome(check, token) for token in made_up[1:]))
    assert {reason for reason, _ in others} == {"key"}
    slowest_other = max(took for _, took in others)
    assert slowest_other < 0.5, slowest_other  # not one of them waited for the fetch
    reason, took = await first
    assert reason == "key"  # the fetch found no such key either
    assert provider.jwks_requests == 2  # one fetch for the twenty
    # A good token is served from the keys it has all along.
    assert (await outcome(check, provider.token()))[0] == "ok"
    print(f"\n20 made-up kids: one fetch of {took:.2f} s; others refused in {slowest_other:.3f} s")


async def test_no_fetch_within_refresh_seconds_of_a_slow_fetch_s_end(
    provider: SlowProvider,
) -> None:
    provider.pause, provider.chunk = 0.2, 8
    check = verifier(provider, http_timeout=0.6, refresh_seconds=2.0)
    assert (await outcome(check, provider.token()))[0] == "issuer_unavailable"
    assert provider.jwks_requests == 1
    # Before: the interval counted from the fetch's start, so a fetch slower than it let the
    # next token fetch at once. Now: refused at once, no new fetch.
    for n in range(10):
        reason, took = await outcome(check, provider.token(kid=f"made-up-{n}"))
        assert reason == "issuer_unavailable" and took < 0.5
    assert provider.jwks_requests == 1


async def test_at_start_up_every_token_waits_for_the_first_fetch(provider: SlowProvider) -> None:
    provider.pause, provider.chunk = 0.05, 128  # ~0.5 s: slow, within the deadline
    check = verifier(provider, http_timeout=5.0)
    outcomes = await asyncio.gather(*(outcome(check, provider.token()) for _ in range(10)))
    assert [reason for reason, _ in outcomes] == ["ok"] * 10
    assert provider.jwks_requests == 1
