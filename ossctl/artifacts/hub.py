"""The only importer of huggingface_hub: resolve a repo at one pinned commit to its file
list, sizes and LFS SHA-256, plus the URLs and auth headers the transfer uses.

Endpoint and token come from the environment passed in (``HF_ENDPOINT``, ``HF_TOKEN``),
falling back to huggingface_hub's own defaults (saved token, default endpoint), so
mirrors and tokens behave as users of ``hf download`` expect.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ossctl.artifacts.shards import printable_name, safe_relpath
from ossctl.errors import NotFoundError, OssctlError, RemoteError, UsageError
from ossctl.redact import register_secret


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path inside the repo
    size: int  # bytes
    sha256: str | None  # LFS sha256 (None for non-LFS files)
    url: str  # resolve URL pinned to the commit


@dataclass(frozen=True)
class RemoteModel:
    repo: str
    commit: str
    files: list[RemoteFile]
    endpoint: str


class Hub:
    """Talks to one hub endpoint with one token."""

    def __init__(self, env: Mapping[str, str], retries: int = 3):
        from huggingface_hub import constants

        self.endpoint = (env.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
        register_secret(self.token)
        self.retries = retries

    def headers(self) -> dict[str, str]:
        """Auth and user-agent headers as huggingface_hub builds them."""
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self.token, library_name="ossctl")

    def resolve(self, repo: str, revision: str | None, patterns: Sequence[str]) -> RemoteModel:
        """File list, sizes and LFS sha256 at one commit (a branch or tag is resolved once).
        Only files matching one of ``patterns`` (fnmatch on the path) are returned.
        Raises NotFoundError (repo / revision / no match), RemoteError (unreachable,
        gated, 401, 5xx after retries), UsageError (unsafe file names)."""
        from huggingface_hub import HfApi, hf_hub_url

        api = HfApi(endpoint=self.endpoint, token=self.token, library_name="ossctl")
        info = self._call(lambda: api.model_info(repo, revision=revision, files_metadata=True), repo, revision)
        if not info.sha:
            raise RemoteError(f"the hub at {self.endpoint} returned no commit for {repo}")
        files = []
        for s in info.siblings or []:
            name = s.rfilename
            if not any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name.rsplit("/", 1)[-1], p) for p in patterns):
                continue
            safe_relpath(name)
            lfs = s.lfs
            sha = (lfs.sha256 if lfs is not None else None)
            size = lfs.size if lfs is not None else s.size
            if size is None:
                raise RemoteError(f"the hub gave no size for {name}", hint="the endpoint may not be a Hugging Face hub")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise RemoteError(f"the hub gave size {size!r} for {name}, which is not a byte count; nothing fetched",
                                  hint="the endpoint is broken or not a Hugging Face hub: check HF_ENDPOINT")
            files.append(RemoteFile(name, int(size), sha.lower() if sha else None,
                                    hf_hub_url(repo, name, revision=info.sha, endpoint=self.endpoint)))
        if not files:
            listing = sorted(printable_name(s.rfilename) for s in info.siblings or [] if s.rfilename.endswith(".gguf"))
            raise NotFoundError(
                f"no file in {repo}@{info.sha[:12]} matches {', '.join(patterns)}",
                hint=("GGUF files there: " + ", ".join(listing[:6]) + (" ..." if len(listing) > 6 else ""))
                if listing else "the repository has no .gguf files")
        return RemoteModel(repo, info.sha, files, self.endpoint)

    def _call(self, fn, repo: str, revision: str | None):
        from huggingface_hub import errors as hf_errors

        transport_errors = _transport_errors()

        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except hf_errors.GatedRepoError:
                raise RemoteError(f"{repo} is gated and this token has no access",
                                  hint="accept the terms on the model page, then set HF_TOKEN to a token with access") from None
            except hf_errors.RevisionNotFoundError:
                raise NotFoundError(f"revision {revision!r} not found in {repo}",
                                    hint="use a branch, tag or full commit sha that exists (default: main)") from None
            except hf_errors.RepositoryNotFoundError as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status == 401 and not self.token:
                    raise RemoteError(f"{repo}: the hub answered 401 (not found, private or gated)",
                                      hint="check the repo id; for private or gated repos set HF_TOKEN") from None
                if revision:  # a bare 404 (no error code) cannot tell the repo from the revision
                    raise NotFoundError(f"{repo} at revision {revision!r} not found at {self.endpoint}",
                                        hint="check the repo id and --revision (a branch, tag or full commit sha "
                                             "that exists; default: main); for private repos set HF_TOKEN") from None
                raise NotFoundError(f"repository {repo} not found at {self.endpoint}",
                                    hint="check the repo id (owner/name); for private repos set HF_TOKEN") from None
            except hf_errors.HfHubHTTPError as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None) or 0
                what = f"{repo} at revision {revision!r}" if revision else repo
                if status == 404:  # no error code: a revision, repo or file the hub does not have
                    raise NotFoundError(f"{what} not found at {self.endpoint} (HTTP 404)",
                                        hint="check the repo id and --revision (a branch, tag or full commit sha "
                                             "that exists; default: main)") from None
                if status == 401 or status == 403:
                    raise RemoteError(f"the hub refused access to {repo} (HTTP {status})",
                                      hint="set HF_TOKEN to a valid token with read access") from None
                if 400 <= status < 500 and status != 429:  # our request is wrong: waiting will not help
                    raise UsageError(f"the hub at {self.endpoint} rejected the request for {what} (HTTP {status})",
                                     hint="check the repo id and --revision (a branch, tag or full commit sha)") from None
                if status < 500 or attempt == self.retries:
                    raise RemoteError(f"the hub at {self.endpoint} answered HTTP {status} for {repo}",
                                      hint="try again later; set HF_ENDPOINT if you use a mirror") from None
            except (*transport_errors, OSError) as exc:
                if attempt == self.retries:
                    raise RemoteError(f"cannot reach the hub at {self.endpoint}: {type(exc).__name__}",
                                      hint="check the network, or HF_ENDPOINT if you use a mirror") from None
            except OssctlError:
                raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


def _transport_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub 2.x talks through httpx2, older releases through httpx / requests
    import importlib

    found: list[type[BaseException]] = []
    for mod, attr in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                      ("requests.exceptions", "ConnectionError")):
        try:
            found.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def check_patterns(patterns: Sequence[str]) -> None:
    for p in patterns:
        if not p or p.startswith("/"):
            raise UsageError(f"bad --include pattern {p!r}", hint="use a glob over file names, e.g. '*-mxfp4-*.gguf'")
