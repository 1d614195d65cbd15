"""Files from the Hugging Face hub, local cache first, with a short reachability probe before any download.

huggingface_hub reads `HF_HUB_OFFLINE` once, at import, and otherwise retries a dead connection for
close to a minute. So nothing here relies on that switch being set in time: the local cache is read with
`local_files_only=True`, and the network is used only after a TCP probe of the hub's own endpoint
(`HF_ENDPOINT`, default huggingface.co) answers within a second or two.
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 1.5
WEIGHT_PATTERNS = ["*.json", "*.safetensors"]
TRUTHY = {"1", "true", "yes", "on"}


class HubError(RuntimeError):
    """A hub file that cannot be had; `reason` is "offline", "gated", "missing" or "other"."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def endpoint() -> str:
    """The hub endpoint huggingface_hub will talk to (`HF_ENDPOINT`, else huggingface.co)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def endpoint_host() -> str:
    return urlparse(endpoint()).hostname or "huggingface.co"


def offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connect to the endpoint's host, DNS included, bounded by `timeout` seconds."""
    if offline_requested():
        return False
    url = urlparse(endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)

    def connect() -> bool:
        with socket.create_connection((host, port), timeout=timeout):
            return True

    # getaddrinfo ignores socket timeouts; a thread bounds a slow resolver too.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout + 0.5)
    except (OSError, FutureTimeout):
        return False
    finally:
        pool.shutdown(wait=False)


def cached_snapshot(repo_id: str, patterns: list[str] | None = None) -> Path | None:
    """The local snapshot of `repo_id` (no network), or None when it is not cached."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns or WEIGHT_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss (not cached, bad id) means "not here"
        return None


def cached_file(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:  # noqa: BLE001
        return None


def _classify(error: Exception, repo_id: str) -> HubError:  # repo_id: as the user named it
    """One line a user can act on; never the server's own paths or a traceback."""
    from huggingface_hub import errors

    status = getattr(getattr(error, "response", None), "status_code", None)
    text = str(error)
    if status == 404 or (status is None and isinstance(error, (errors.RepositoryNotFoundError,
                                                                 errors.RevisionNotFoundError,
                                                                 errors.EntryNotFoundError))):
        return HubError(f"the hub has no '{repo_id}' (HTTP 404): check the spelling", "missing")
    if isinstance(error, errors.GatedRepoError) or status in (401, 403) or "gated" in text.lower():
        return HubError(f"'{repo_id}' is gated or needs a token (HTTP {status or 401}): accept its licence on "
                        "its hub page and set HF_TOKEN", "gated")
    return HubError(f"could not download '{repo_id}' ({type(error).__name__})", "other")


def _not_reachable(repo_id: str) -> HubError:
    return HubError(f"'{repo_id}' is not in the local cache and {endpoint_host()} cannot be reached (offline)",
                    "offline")


def fetch_snapshot(repo_id: str, patterns: list[str] | None = None) -> Path:
    """Local snapshot, else a download (json + safetensors only: never pickle) when the hub answers."""
    from huggingface_hub import snapshot_download

    folder = cached_snapshot(repo_id, patterns)
    if folder is not None:
        return folder
    if not hub_reachable():
        raise _not_reachable(repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns or WEIGHT_PATTERNS,
                                      token=os.environ.get("HF_TOKEN") or None, etag_timeout=5))
    except Exception as error:  # noqa: BLE001 - every failure becomes one line
        raise _classify(error, repo_id) from error


def fetch_file(repo_id: str, filename: str, label: str | None = None) -> Path:
    """One file: local cache, else a download when the hub answers. Messages name `label` (default: the repo)."""
    from huggingface_hub import hf_hub_download

    path = cached_file(repo_id, filename)
    if path is not None:
        return path
    if not hub_reachable():
        raise _not_reachable(label or repo_id)
    try:
        return Path(hf_hub_download(repo_id, filename, token=os.environ.get("HF_TOKEN") or None, etag_timeout=5))
    except Exception as error:  # noqa: BLE001
        raise _classify(error, label or repo_id) from error
