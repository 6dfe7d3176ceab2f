"""What records (audit rows, spans) keep of the request text that may carry secrets."""

from __future__ import annotations


def resource_subject(uri: str) -> str:
    """A resource URI without its query and fragment, and without credentials in its authority
    (`user:password@`): those carry tokens as often as not (`...?token=...`)."""
    uri = uri.partition("?")[0].partition("#")[0]
    scheme, separator, rest = uri.partition("://")
    if separator:
        authority, slash, path = rest.partition("/")
        rest = authority.rpartition("@")[2] + slash + path
    return scheme + separator + rest
