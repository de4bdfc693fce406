"""Model aliases: "20b", "120b" -> hub repo, file pattern, defaults, trained context and
the published architecture (for planning before a model is downloaded).

File names are resolved from the repo listing by pattern (upstream renamed the 20b file
once), never hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ossctl.errors import UsageError
from ossctl.redact import shown


# gpt-oss reasoning levels (the harmony template's "Reasoning: low|medium|high"), for
# profiles (served default) and bench (per request)
REASONING_EFFORTS = ("low", "medium", "high")


@dataclass(frozen=True)
class Architecture:
    """The published architecture of a catalog model, as in the GGUF headers of its hub
    repo; the VRAM plan uses it (approximately) until the model is downloaded. The
    trained context is the entry's ``context_length``."""

    name: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_swa: int  # sliding window (tokens)
    swa_pattern: int  # every n-th layer is full attention (llama.cpp's set_swa_pattern)
    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    n_vocab: int


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    repo: str
    pattern: str  # fnmatch glob over the repo's file names
    parts: int  # expected number of split parts
    approx_size: int  # bytes, for planning before anything is downloaded
    context_length: int  # trained context (tokens)
    description: str
    architecture: Architecture | None = None  # None: unknown until downloaded


CATALOG: dict[str, CatalogEntry] = {
    "120b": CatalogEntry(
        alias="120b",
        repo="ggml-org/gpt-oss-120b-GGUF",
        pattern="gpt-oss-120b-mxfp4-*-of-*.gguf",
        parts=3,
        approx_size=63_387_346_464,
        context_length=131072,
        description="gpt-oss-120b, MXFP4, 3 parts (~63 GB)",
        architecture=Architecture(
            name="gpt-oss-120b", arch="gpt-oss", n_layer=36, n_embd=2880, n_head=64, n_head_kv=8, head_dim=64,
            n_swa=128, swa_pattern=2, n_expert=128, n_expert_used=4, n_ff_exp=2880, n_vocab=201088),
    ),
    "20b": CatalogEntry(
        alias="20b",
        repo="ggml-org/gpt-oss-20b-GGUF",
        pattern="gpt-oss-20b*.gguf",
        parts=1,
        approx_size=12_109_566_560,
        context_length=131072,
        description="gpt-oss-20b, MXFP4, single file (~12 GB)",
        architecture=Architecture(
            name="gpt-oss-20b", arch="gpt-oss", n_layer=24, n_embd=2880, n_head=64, n_head_kv=8, head_dim=64,
            n_swa=128, swa_pattern=2, n_expert=32, n_expert_used=4, n_ff_exp=2880, n_vocab=201088),
    ),
}


def is_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def resolve(name: str) -> CatalogEntry:
    """Return the catalog entry for an alias, or an ad-hoc entry for ``owner/repo``
    (pattern ``*.gguf``). Raises :class:`UsageError` for anything else."""
    if name in CATALOG:
        return CATALOG[name]
    for entry in CATALOG.values():
        if entry.repo.lower() == name.lower():
            return entry
    if is_repo_id(name):
        return CatalogEntry(name, name, "*.gguf", 0, 0, 0, "hub repo")
    known = ", ".join(sorted(CATALOG))
    raise UsageError(f"unknown model {shown(name)}", hint=f"use an alias ({known}) or a hub repo id like owner/repo; see `ossctl models`")
