"""Which resource template a URI belongs to (RFC 6570), to route a read or a completion.

Matching is the official SDK's (`mcp.shared.uri_template`, what Python MCP servers route their
own reads with; linear, no backtracking): levels 1 to 3, `{var}`, `{+var}`, `{#var}`,
`{/var}`, `{.var}`, `{;var}`, and a trailing `{?a,b}{&c}` matched as a query (any order, some
or none given, others ignored). A template also matches itself, as a completion's
`ref/resource` names it. The level-4 modifiers it cannot match (`{var:3}`, `{?list*}`) are
matched as their plain variable, whose expansions include theirs; a template it refuses
otherwise (`{a}{b}`: no literal between) matches only itself.
"""

from __future__ import annotations

import functools
import re

from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

MAX_TEMPLATE = 2048  # characters: a longer one (a server's text) matches nothing
MAX_URI = 65_536
_EXPRESSION = re.compile(r"\{[^{}]*\}")
_MODIFIER = re.compile(r"(?::[0-9]*|\*)(?=[,}])")  # `:3` or `*` after a variable's name


def matches(template: object, uri: str) -> bool:
    """Whether `uri` is `template` itself or one of its expansions."""
    if not isinstance(template, str) or len(template) > MAX_TEMPLATE or len(uri) > MAX_URI:
        return False
    if template == uri:
        return True
    parsed = _parsed(template)
    return parsed is not None and parsed.match(uri, max_uri_length=MAX_URI) is not None


@functools.lru_cache(maxsize=1024)
def _parsed(template: str) -> UriTemplate | None:
    plain = _EXPRESSION.sub(lambda expression: _MODIFIER.sub("", expression[0]), template)
    for candidate in (template, plain):
        try:
            return UriTemplate.parse(candidate)
        except InvalidUriTemplate:
            continue
    return None
