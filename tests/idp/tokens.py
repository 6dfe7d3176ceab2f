"""The test OpenID provider's tokens, for the OAuth tests: bench/idp.py holds them (tests may
import bench; bench never imports tests)."""

from bench.idp import REDIRECT, REPO, Idp, mint, play_browser, set_user, start_idp

__all__ = ["REDIRECT", "REPO", "Idp", "mint", "play_browser", "set_user", "start_idp"]
