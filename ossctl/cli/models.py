"""``ossctl models``, ``download``, ``verify``, ``hash``, ``adopt``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import ProfileOpt

# Library modules are imported inside the commands: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).


def models_cmd(ctx: typer.Context) -> None:
    """List the model aliases the other commands accept."""
    from ossctl import catalog

    st = output.state(ctx)
    rows = [{"alias": e.alias, "repo": e.repo, "pattern": e.pattern, "parts": e.parts,
             "approx_size": e.approx_size, "context_length": e.context_length, "description": e.description}
            for e in catalog.CATALOG.values()]
    output.emit(st, rows, lambda: output.table(
        ["ALIAS", "REPO", "FILES", "PARTS", "SIZE", "CONTEXT"],
        [[r["alias"], r["repo"], r["pattern"], r["parts"], output.human_size(r["approx_size"]), r["context_length"]]
         for r in rows], "lllrrr"))


class _Bars:
    """tqdm bars on stderr: one per part plus a total (off when not a TTY / --json)."""

    def __init__(self, st: output.State):
        self.make = output.progress_factory(st)
        self.st = st
        self.bars: dict = {}
        self.total = None
        import threading

        self.lock = threading.Lock()

    def start(self, files):
        self.total = self.make(sum(s for _, s, _ in files), "total", 0)
        self.total.update(sum(d for _, _, d in files))
        for i, (name, size, done) in enumerate(files, start=1):
            bar = self.make(size, name if len(name) < 40 else "…" + name[-39:], i)
            bar.update(done)
            self.bars[name] = bar

    def advance(self, name, n):
        with self.lock:
            self.bars[name].update(n)
            self.total.update(n)

    def note(self, message):
        output.info(message)

    def close(self):
        for b in self.bars.values():
            b.close()
        if self.total is not None:
            self.total.close()


def download_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Catalog alias (see `ossctl models`) or hub repo owner/name."),
    directory: Optional[str] = typer.Option(None, "--dir", help="Target directory (default: HOME/models/OWNER/NAME)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit; pinned to its commit."),
    include: Optional[List[str]] = typer.Option(None, "--include", help="Glob over file names (repeatable)."),
    workers: int = typer.Option(4, "--workers", min=1, max=64, help="Parts transferred in parallel."),
    full: bool = typer.Option(False, "--full", help="Re-hash files already on disk instead of trusting size + mtime."),
) -> None:
    """Download a model's GGUF parts (resumable), verify them and write manifest.toml."""
    from ossctl.artifacts.download import Progress, download

    st = output.state(ctx)

    class P(_Bars, Progress):
        pass

    bars = P(st)
    res = download(st.settings, model, directory=directory, revision=revision, include=include or (),
                   workers=workers, full=full, progress=bars)
    m = res.manifest
    data = m.public(res.directory)
    data["transferred"] = res.transferred
    if res.up_to_date:
        output.info(f"{m.repo}@{(m.revision or '')[:12]} already complete and verified in {res.directory}")
    output.emit(st, data, lambda: _render_manifest(m, res.directory))


def verify_cmd(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="MODEL|DIR", help="Model alias, owner/repo, or a model directory."),
    full: bool = typer.Option(False, "--full", help="Re-hash every file (default trusts size + mtime recorded)."),
    signer: Optional[List[Path]] = typer.Option(None, "--signer", metavar="PUB.pem",
                                                help="Trust signatures by this public key (repeatable)."),
    cert_chain: Optional[List[Path]] = typer.Option(None, "--cert-chain", metavar="CHAIN.pem",
                                                    help="Trust bundles signed with a certificate chaining to these PEM roots."),
    cert_identity: Optional[str] = typer.Option(None, "--cert-identity", metavar="EMAIL|URI",
                                                help="Sigstore keyless signer's identity (needs --cert-oidc-issuer and the network)."),
    cert_oidc_issuer: Optional[str] = typer.Option(None, "--cert-oidc-issuer", metavar="URL",
                                                   help="OIDC issuer of --cert-identity (e.g. https://accounts.google.com)."),
    profile: ProfileOpt = None,
) -> None:
    """Check files against the manifest: missing, extra, size or hash mismatch. When
    model.sig is there (or a signer is given), also its signature: signed by whom, with
    which algorithm, and every file not covered by it or covered with another digest
    (exit 4). Trust: --signer / --cert-chain / --cert-identity, else the [signature]
    table of --profile; without either, the digests are compared and the signer only
    reported ("unverified")."""
    from ossctl.artifacts import manifest as mf
    from ossctl.artifacts import signing
    from ossctl.errors import EXIT_INTEGRITY, UsageError

    st = output.state(ctx)
    directory = mf.locate_model_dir(st.settings, target)
    if bool(cert_identity) != bool(cert_oidc_issuer):
        raise UsageError("--cert-identity and --cert-oidc-issuer go together", hint="pass both, or neither")
    trust, require = signing.Trust(tuple(signer or ()), tuple(cert_chain or ()), cert_identity, cert_oidc_issuer), False
    if profile and not trust.given:
        from ossctl.serve.profiles import resolve_profile

        table = resolve_profile(st.settings, profile).get("signature") or {}
        trust, require = signing.Trust.from_profile(table), bool(table.get("require"))
    res = mf.verify_dir(directory, full=full)
    sig = (signing.check(directory, res.manifest, trust, require) if res.ok
           else signing.SignatureCheck("skipped"))
    ok = res.ok and sig.ok
    data = res.manifest.public(directory)
    data["ok"] = ok
    data["problems"] = res.problems + sig.problems
    data["signature"] = sig.public()

    def human() -> str:
        lines = [_render_manifest(res.manifest, directory)]
        how = "re-hashed " + (", ".join(res.rehashed) if res.rehashed else "nothing (size + mtime unchanged)")
        if sig.status != "unsigned":
            lines.append(_render_signature(sig))
        if ok:
            lines.append(f"OK: {len(res.manifest.files)} file(s) verified; {how}")
        else:
            lines += [f"FAIL {p['kind']}: {p['file']}: {p['detail']}" for p in data["problems"]]
        return "\n".join(lines)

    output.emit(st, data, human)
    if not ok:
        raise typer.Exit(EXIT_INTEGRITY)


def _render_signature(sig) -> str:
    if sig.status == "skipped":
        return "signature  not checked (the files do not match the manifest)"
    rows = [f"signature  {sig.status}" + ("" if sig.status != "unverified" else
                                          " (no trusted signer given: --signer PUB.pem or --profile NAME)")]
    if sig.signed_by:
        rows.append(f"signed by  {sig.signed_by}" + (f" (trusted: {sig.trusted})" if sig.trusted else ""))
    if sig.algorithm:
        rows.append(f"algorithm  {sig.algorithm}")
    return "\n".join(rows)


def hash_cmd(
    ctx: typer.Context,
    paths: List[Path] = typer.Argument(..., metavar="PATH...", help="GGUF files, or a directory of them."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub repo id, to compute the model id."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Files hashed in parallel (default: one thread per file)."),
) -> None:
    """Per-part SHA-256 and the composite hash of local files, hashed in parallel."""
    from ossctl.artifacts.local import hash_paths

    st = output.state(ctx)
    m, directory = hash_paths(paths, repo=repo, workers=workers)
    output.emit(st, m.public(directory), lambda: _render_manifest(m, directory))


def adopt_cmd(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., metavar="DIR", help="Directory holding the model's .gguf parts."),
    repo: str = typer.Option(..., "--repo", metavar="OWNER/REPO",
                             help="Hub repo the files came from (an alias from `ossctl models` works too)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit to compare with (default: main)."),
    offline: bool = typer.Option(False, "--offline", help="Do not ask the Hub; record the local hashes only."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Files hashed in parallel (default: one thread per file)."),
    signer: Optional[List[Path]] = typer.Option(None, "--signer", metavar="PUB.pem",
                                                help="An existing model.sig must be signed by this key (repeatable)."),
) -> None:
    """Write manifest.toml for GGUF parts already on disk (fetched with wget, on shared
    storage, copied to an air-gapped host): check the split set and GGUF keys, hash the
    parts, compare with the Hub's SHA-256 when it answers. Then verify, register and
    deploy work without downloading again. An OpenSSF model-signing bundle already there
    (model.sig) is kept when it signs these files' digests (with --signer, by that key);
    otherwise nothing is written (exit 4)."""
    from ossctl.artifacts import signing
    from ossctl.artifacts.local import adopt

    st = output.state(ctx)
    res = adopt(st.settings, directory, repo, revision=revision, offline=offline, workers=workers,
                trust=signing.Trust(tuple(signer or ())))
    m = res.manifest
    data = m.public(res.directory)
    data["hub"] = {"status": res.hub, "detail": res.hub_detail}
    data["signature"] = res.signature.public() if res.signature else None
    if res.signature:
        output.info(f"kept {signing.SIG_NAME}: it signs these files ({res.signature.status}, "
                    f"signed by {res.signature.signed_by})")
    if res.hub == "agreed":
        output.info(f"the Hub agrees: every part's size and SHA-256 match {m.repo}@{m.revision}")
    elif res.hub == "unreachable":
        output.info(f"warning: could not check against the Hub ({res.hub_detail}); "
                    "the manifest records the local hashes only, with no pinned commit")
    else:
        output.info("not checked against the Hub (--offline); the manifest records the local hashes only")
    output.emit(st, data, lambda: _render_manifest(m, res.directory))


def _render_manifest(m, directory) -> str:
    rows = [[f.name, output.human_size(f.size), f.sha256] for f in m.files]
    head = []
    if m.repo:
        head.append(f"repo       {m.repo}" + (f"@{m.revision}" if m.revision else ""))
    head.append(f"dir        {directory}")
    head.append(f"composite  {m.composite_sha256}")
    if m.model_id:
        head.append(f"model id   {m.model_id}")
    return "\n".join(head) + "\n\n" + output.table(["FILE", "SIZE", "SHA256"], rows, "lrl")
