"""Waiting for what happens in the background: poll until a check holds, or fail saying what
was seen last."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
Message = str | Callable[[Any], object]


def until(
    read: Callable[[], T],
    accept: Callable[[T], object] = bool,
    *,
    timeout: float = 30,
    interval: float = 0.05,
    what: Message = "timed out",
    fail: bool = True,
) -> T:
    """Calls `read` until `accept` takes what it returned (by default: until it is true) and
    returns that. After `timeout` seconds: an AssertionError saying `what` (a string, or a
    function of the last value read), or with `fail=False` the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            if fail:
                raise AssertionError(_said(what, value))
            return value
        time.sleep(interval)


async def until_async(
    read: Callable[[], T | Awaitable[T]],
    accept: Callable[[T], object] = bool,
    *,
    timeout: float = 30,
    interval: float = 0.05,
    what: Message = "timed out",
) -> T:
    """`until` for a test on the event loop: `read` may be a coroutine function, and the
    pauses between reads let the loop run."""
    deadline = time.monotonic() + timeout
    while True:
        read_value = read()
        value: T = await read_value if inspect.isawaitable(read_value) else read_value
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_said(what, value))
        await asyncio.sleep(interval)


def _said(what: Message, value: object) -> object:
    return what(value) if callable(what) else what
