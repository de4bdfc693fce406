"""``ossctl sign``: an OpenSSF model-signing bundle (model.sig) next to the manifest."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ossctl.cli import output

# Library modules are imported inside the command: `ossctl --help` imports this module, and
# model_signing alone costs 1.7 s of imports (sigstore).


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def sign_cmd(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="MODEL|DIR", help="Model alias, owner/repo, or a model directory."),
    key: Path = typer.Option(..., "--key", metavar="PRIVATE.pem",
                             help="EC private key (P-256/384/521), PEM. Its passphrase, if any: "
                                  "$OSSCTL_SIGN_KEY_PASSPHRASE, else asked on a terminal."),
    cert: Optional[Path] = typer.Option(None, "--cert", metavar="CHAIN.pem",
                                        help="Sign with a certificate: the signing certificate first, then its chain."),
    full: bool = typer.Option(False, "--full", help="Re-hash every part first (default trusts size + mtime recorded)."),
) -> None:
    """Sign the model's verified parts: writes model.sig (an OpenSSF model-signing v1.0
    Sigstore bundle) next to manifest.toml. The statement lists each part's SHA-256 as
    the manifest has it (no second read of the parts); manifest.toml, model.sig and
    .ossctl.lock are left out (ossctl rewrites the manifest's cache). Any other file in
    the directory is refused (exit 4): move it out first. `python -m model_signing
    verify key DIR --public_key PUB.pem` accepts the bundle."""
    from ossctl.artifacts import manifest as mf
    from ossctl.artifacts import signing
    from ossctl.artifacts.dirlock import model_dir_lock

    st = output.state(ctx)
    directory = mf.locate_model_dir(st.settings, target)
    mf.read_manifest(directory)  # no model there: "download it first" (exit 3), before any lock file
    password = st.settings.env.get(signing.PASSPHRASE_ENV) or None
    if password is None and signing.key_encrypted(key) and _interactive():
        password = typer.prompt(f"passphrase for {key}", hide_input=True, err=True)
    with model_dir_lock(directory, "sign"):  # no download / adopt changes the parts while they are signed
        manifest = mf.require_verified(directory, full=full)
        res = signing.sign(directory, manifest, key, cert, password.encode("utf-8") if password else None)
    data = res.public()

    def human() -> str:
        rows = [("signature", str(res.path)), ("signed by", res.signed_by), ("algorithm", res.algorithm),
                ("composite", res.composite_sha256)]
        head = "\n".join(f"{k:<10} {v}" for k, v in rows)
        return head + "\n\n" + output.table(["FILE", "SHA256"], [[n, d] for n, d in res.files.items()], "ll")

    output.emit(st, data, human)
