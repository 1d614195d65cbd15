"""Which model sources a visitor may name: anything on a local machine, an allow-list on a public one.

Why a policy object and not a dropdown setting: every API endpoint takes a `model` string, so the
check must sit where sources are loaded (`ExplorerService.load_model`), before anything is read
from disk or downloaded. On a public server no message may depend on the server's files, so
refusals are one fixed sentence and paths are never echoed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

# The bundled model plus small, ungated real backbones (a few hundred MB of memory at most).
PUBLIC_DEFAULT_MODELS = (
    "bundled",
    "timm:vit_small_patch16_dinov3.lvd1689m",
    "timm:convnext_tiny.dinov3_lvd1689m",
    "facebook/dinov2-small",
    "facebook/dinov2-with-registers-small",
)
_TRUE = {"1", "true", "yes", "on"}
# A hub id or timm name (safe to repeat back); anything else may be a path and is never echoed.
_NAME = re.compile(r"^(timm:)?[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
# An absolute POSIX path inside a message (not the path part of a URL: no ':' or '/' just before).
_ABS_PATH = re.compile(r"(?<![\w.:/~-])[/~][^\s'\"`,;:)]*")


def is_public(flag: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """`--public`, `EXPLORER_PUBLIC=1`, or running on a Hugging Face Space (`SPACE_ID` set)."""
    env = os.environ if env is None else env
    return bool(flag) or env.get("EXPLORER_PUBLIC", "").strip().lower() in _TRUE or bool(env.get("SPACE_ID"))


def allowed_models(default_source: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The deployer's `DINOV3_MODELS` (comma-separated), else PUBLIC_DEFAULT_MODELS; the start model first."""
    env = os.environ if env is None else env
    listed = [s.strip() for s in env.get("DINOV3_MODELS", "").split(",") if s.strip()]
    names = listed or list(PUBLIC_DEFAULT_MODELS)
    if default_source and default_source.strip():
        names.insert(0, default_source.strip())  # the deployer chose it: always allowed
    return tuple(dict.fromkeys(names))


def redact_paths(message: str) -> str:
    """Absolute server paths in a message become '<server path>' (URLs are kept)."""
    return _ABS_PATH.sub("<server path>", message)


def shown(source: str) -> str:
    """A source as it may appear in a public message: quoted when it is a plain name, else generic."""
    return f"'{source}'" if _NAME.match(source) and ".." not in source else "This source"


@dataclass(frozen=True)
class ModelPolicy:
    """`public=False`: every source is allowed (the machine's owner is the user)."""

    public: bool = False
    allowed: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, public: bool = False, default_source: str | None = None,
                 env: Mapping[str, str] | None = None) -> ModelPolicy:
        public = is_public(public, env)
        return cls(public, allowed_models(default_source, env) if public else ())

    def refusal(self, source: str) -> str | None:
        """None when `source` may be loaded, else the one-line reason (the same for any unlisted string)."""
        if not self.public or source in self.allowed:
            return None
        return (f"{shown(source)} is not on this server's allow-list. "
                f"Choose one of: {', '.join(self.allowed)}.")

    def redact(self, message: str) -> str:
        """In public mode, server paths in a message become '<server path>'; locally, unchanged."""
        return redact_paths(message) if self.public else message
