"""OpenSSF Model Signing (OMS) bundles for a model directory: ``model.sig`` next to the
manifest. ONLY importer of ``model_signing`` (sigstore's model-transparency library),
which writes and checks the format; ossctl never writes the bundle by hand.

What the signed statement covers: every file of the directory (recursively) except
``manifest.toml``, ``model.sig`` itself and ``.ossctl.lock``, which are recorded in the
statement's ``ignore_paths`` so that the library's own verifier
(``python -m model_signing verify key DIR --signature DIR/model.sig --public_key PUB``)
skips them too. ``manifest.toml`` is left out on purpose: ossctl rewrites it (the
fast re-verify cache records mtimes, ``adopt`` re-creates it), which would void the
signature although no model byte changed; what it says that matters (each part's
SHA-256, hence the composite) is in the statement itself. A model directory signed
by ossctl therefore holds the parts and nothing else that is covered.

No second pass over the bytes: the per-file digests in the statement are the
manifest's, which :func:`ossctl.artifacts.manifest.require_verified` has just checked
(or re-hashed with ``--full``); the library is handed a manifest built from them
(``model_signing.manifest.Manifest``) through a hashing configuration that returns it.
Only files the ossctl manifest does not list (a stray README) are hashed here.

Keys: model-signing 1.1 signs and verifies with elliptic-curve keys only (P-256,
P-384, P-521), with a key or a certificate chain, or keyless through Sigstore (needs
the network: documented, not tested here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ossctl.artifacts import hashing
from ossctl.artifacts import manifest as mf
from ossctl.artifacts.dirlock import LOCK_NAME
from ossctl.artifacts.shards import order_parts
from ossctl.errors import IntegrityError, NotFoundError, OssctlError, UsageError
from ossctl.fsutil import atomic_write

SIG_NAME = "model.sig"  # the library's default name: its CLI finds it without --signature
# left out of the statement (and named in it, so the library's verifier leaves them out too)
IGNORED = (mf.MANIFEST_NAME, SIG_NAME, LOCK_NAME)
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")  # the library ignores these by default
PASSPHRASE_ENV = "OSSCTL_SIGN_KEY_PASSPHRASE"
_CURVES = {"secp256r1": ("P-256", "sha256"), "secp384r1": ("P-384", "sha384"), "secp521r1": ("P-521", "sha512")}
_EC_HINT = "generate one: `openssl ecparam -name prime256v1 -genkey -noout -out key.pem` (public: `openssl ec -in key.pem -pubout`)"


def sig_path(directory: Path) -> Path:
    return Path(directory) / SIG_NAME


# ---------------------------------------------------------------------- types

@dataclass(frozen=True)
class Trust:
    """Who may have signed: public keys (PEM), a certificate chain (PEM roots /
    intermediates), or a Sigstore identity with its OIDC issuer (keyless)."""

    keys: tuple[Path, ...] = ()
    cert_chain: tuple[Path, ...] = ()
    identity: str | None = None
    oidc_issuer: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.keys or self.cert_chain or self.identity)

    @classmethod
    def from_profile(cls, table: dict[str, Any] | None) -> "Trust":
        t = table or {}
        return cls(tuple(Path(k).expanduser() for k in t.get("keys", ())),
                   tuple(Path(c).expanduser() for c in t.get("certificate_chain", ())),
                   t.get("identity") or None, t.get("oidc_issuer") or None)


@dataclass(frozen=True)
class Statement:
    """What a bundle says, parsed without checking who signed it: the signer as the
    bundle names it, and the SHA-256 it lists per file."""

    kind: str  # "key" | "certificate" | "sigstore"
    signed_by: str  # "key sha256:…" (the bundle's public-key hint) or a certificate subject / identity
    key_hint: str | None
    algorithm: str | None  # known once the key is (see SignatureCheck)
    files: dict[str, str]  # relative POSIX path -> lowercase hex sha256
    ignore_paths: tuple[str, ...]
    root_sha256: str  # the statement subject's digest (over the resource digests, name order)

    def parts(self) -> list[str]:
        """The GGUF parts it covers, in part order."""
        names = [n for n in self.files if n.endswith(".gguf")]
        return order_parts(names) if names else []

    def composite_sha256(self) -> str | None:
        """The composite (:func:`ossctl.artifacts.hashing.composite_sha256`, the only one)
        of the parts' digests as signed; None when it covers no part."""
        parts = self.parts()
        return hashing.composite_sha256([self.files[n] for n in parts]) if parts else None


@dataclass
class SignatureCheck:
    """``status``: "verified" (a trusted signer, every file covered with its digest),
    "failed" (see ``problems``), "unverified" (a bundle, but no trust given: its digests
    were compared, its signer not checked), "unsigned" (no bundle)."""

    status: str
    signed_by: str | None = None
    algorithm: str | None = None
    trusted: str | None = None  # the key file / chain / identity that verified it
    composite_sha256: str | None = None  # of the digests in the signed statement
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "unverified", "unsigned") and not self.problems

    def public(self) -> dict[str, Any]:
        return {"status": self.status, "signed_by": self.signed_by, "algorithm": self.algorithm,
                "trusted": self.trusted, "composite_sha256": self.composite_sha256, "problems": self.problems}


@dataclass(frozen=True)
class SignResult:
    path: Path
    signed_by: str
    algorithm: str
    files: dict[str, str]
    composite_sha256: str

    def public(self) -> dict[str, Any]:
        return {"signature": str(self.path), "signed_by": self.signed_by, "algorithm": self.algorithm,
                "files": [{"name": n, "sha256": d} for n, d in self.files.items()],
                "composite_sha256": self.composite_sha256}


# ---------------------------------------------------------------------- keys

def _load_private(key: Path, password: bytes | None):
    from cryptography.hazmat.primitives import serialization

    try:
        data = Path(key).expanduser().read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"private key {key} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read private key {key}: {exc.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        if "encrypted" in str(exc) and password is None:
            raise UsageError(f"private key {key} is encrypted and no passphrase was given",
                             hint=f"set {PASSPHRASE_ENV}, or run `ossctl sign` on a terminal to be asked") from None
        raise UsageError(f"private key {key}: {exc}") from None
    except ValueError as exc:
        msg = str(exc).lower()
        if "password" in msg or "decrypt" in msg or "bad decrypt" in msg:
            raise UsageError(f"wrong passphrase for private key {key}",
                             hint=f"check {PASSPHRASE_ENV} (or the passphrase typed)") from None
        raise UsageError(f"{key} is not a PEM private key ({exc})", hint=_EC_HINT) from None


def key_encrypted(key: Path) -> bool:
    """Whether a PEM private key needs a passphrase (so the CLI asks only then)."""
    try:
        head = Path(key).expanduser().read_bytes()[:200]
    except OSError:
        return False
    return b"ENCRYPTED" in head


def _ec_facts(public_key, where: Path | str) -> tuple[str, str]:
    """(curve name, algorithm) of a supported EC key; :class:`UsageError` naming the key
    type otherwise (model-signing 1.1 verifies nothing else)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = type(public_key).__name__.removeprefix("_").replace("PublicKey", "")
        raise UsageError(f"{where} is an {kind} key; OpenSSF model signing (model-signing 1.1) signs with "
                         "elliptic-curve keys only (P-256, P-384, P-521)", hint=_EC_HINT)
    if public_key.curve.name not in _CURVES:
        raise UsageError(f"{where} is on curve {public_key.curve.name}; model signing takes P-256, P-384 or P-521",
                         hint=_EC_HINT)
    curve, digest = _CURVES[public_key.curve.name]
    return curve, f"ecdsa-{curve.lower().replace('-', '')}-{digest}"


def key_hint(public_key) -> str:
    """What the library records in a bundle to name the key: SHA-256 of its PEM."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _load_public(path: Path):
    from cryptography.hazmat.primitives import serialization

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"public key {path} does not exist",
                            hint="pass the signer's public key PEM (`openssl ec -in key.pem -pubout -out key.pub`)") from None
    except OSError as exc:
        raise UsageError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise UsageError(f"{path} is not a PEM public key",
                         hint="pass the signer's public key (`openssl ec -in key.pem -pubout -out key.pub`)") from None


# ---------------------------------------------------------------------- the directory

def _ignored(rel: str, ignore: tuple[str, ...]) -> bool:
    p = PurePosixPath(rel)
    return any(p == PurePosixPath(i) or p.is_relative_to(PurePosixPath(i)) for i in ignore)


def directory_files(directory: Path, ignore: tuple[str, ...] = IGNORED) -> list[str]:
    """Every file under ``directory`` as the library's serializer sees one (files and
    links to files, recursively), relative POSIX paths, without ``ignore`` and the git
    paths; sorted."""
    directory = Path(directory)
    out = []
    for p in directory.rglob("*"):
        rel = p.relative_to(directory).as_posix()
        if _ignored(rel, (*ignore, *GIT_PATHS)) or p.is_dir():
            continue
        out.append(rel)
    return sorted(out)


def actual_digests(directory: Path, known: dict[str, str], ignore: tuple[str, ...] = IGNORED) -> dict[str, str]:
    """Digest per file of the directory: ``known``'s (the verified manifest's, for its
    parts), a fresh SHA-256 for anything else (files the manifest does not know are not
    model parts: small, or a mistake to name)."""
    names = directory_files(directory, ignore)
    others = [n for n in names if n not in known]
    fresh = dict(zip(others, hashing.sha256_files([Path(directory) / n for n in others]))) if others else {}
    return {n: known.get(n) or fresh[n] for n in names}


def compare(files: dict[str, str], actual: dict[str, str], where: str = "") -> list[dict[str, Any]]:
    """Problems between the digests a statement signed (``files``) and those of the files
    present (``actual``): a file not covered, covered with another digest, or signed but
    absent. ``where`` prefixes the detail (a fleet host). Pure."""
    pre = f"{where}: " if where else ""
    out = []
    for n in sorted(actual):
        if n not in files:
            out.append({"file": n, "kind": "unsigned", "detail": f"{pre}not covered by the signature"})
        elif actual[n] != files[n]:
            out.append({"file": n, "kind": "digest",
                        "detail": f"{pre}sha256 {actual[n]} but the signature covers {files[n]}"})
    for n in sorted(set(files) - set(actual)):
        out.append({"file": n, "kind": "missing", "detail": f"{pre}signed but not in the directory"})
    return out


# ---------------------------------------------------------------------- the bundle

def read_statement(path: Path) -> Statement:
    """Parse a bundle without checking its signature (for reporting, and to pick the key
    it names). Raises :class:`NotFoundError` when absent, :class:`IntegrityError` when
    it is not an OMS bundle."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no signature {path}", hint=f"sign the model: `ossctl sign {Path(path).parent} --key KEY.pem`") from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path} is not a signature bundle (JSON): {exc}",
                             hint=f"sign again: `ossctl sign {Path(path).parent} --key KEY.pem`") from None
    try:
        vm = doc["verificationMaterial"]
        env = doc.get("dsseEnvelope")
        if env is None:
            raise KeyError("dsseEnvelope")
        payload = json.loads(base64.b64decode(env["payload"]))
        pred = payload["predicate"]
        files = {r["name"]: r["digest"].lower() for r in pred["resources"]}
        algos = {r["algorithm"] for r in pred["resources"]}
        ignore = tuple(str(p) for p in pred.get("serialization", {}).get("ignore_paths", ()))
        root = payload["subject"][0]["digest"]["sha256"]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{path} is not an OpenSSF model-signing bundle (no {exc})",
                             hint=f"sign again: `ossctl sign {Path(path).parent} --key KEY.pem`") from None
    if algos - {"sha256"}:
        raise IntegrityError(f"{path} lists {', '.join(sorted(algos))} digests; ossctl checks sha256 ones",
                             hint=f"sign it with ossctl (`ossctl sign {Path(path).parent} --key KEY.pem`)")
    hint = (vm.get("publicKey") or {}).get("hint")
    if hint:
        return Statement("key", f"key sha256:{hint}", hint, None, files, ignore, root)
    chain = (vm.get("x509CertificateChain") or {}).get("certificates") or []
    if chain:
        subject, algo = _cert_facts(chain[0]["rawBytes"])
        return Statement("certificate", subject, None, algo, files, ignore, root)
    cert = vm.get("certificate")
    if cert:
        subject, algo = _cert_facts(cert["rawBytes"], identity=True)
        return Statement("sigstore", subject, None, algo, files, ignore, root)
    return Statement("key", "key (no hint)", None, None, files, ignore, root)


def _cert_facts(raw_b64: str, identity: bool = False) -> tuple[str, str | None]:
    """(who, algorithm) of a bundle's signing certificate (DER, base64)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(base64.b64decode(raw_b64))
    try:
        algo = _ec_facts(cert.public_key(), "the certificate")[1]
    except UsageError:
        algo = None
    if identity:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(v.value) for v in san]
            if names:
                return "identity " + names[0], algo
        except x509.ExtensionNotFound:
            pass
    return "certificate " + cert.subject.rfc4514_string(), algo


def _lib_manifest(name: str, files: dict[str, str], ignore: tuple[str, ...], symlinks: bool):
    from model_signing import manifest as lm

    Digest = lm.hashing.Digest  # the digest type manifest items hold (its module is private)

    ser = lm.SerializationType.from_args({"method": "files", "hash_type": "sha256", "allow_symlinks": symlinks,
                                          "ignore_paths": list(ignore)})
    items = [lm.FileManifestItem(path=PurePosixPath(n), digest=Digest("sha256", bytes.fromhex(d)))
             for n, d in files.items()]
    return lm.Manifest(name, items, ser)


class _Given:
    """A hashing configuration for the library that hands back digests ossctl already
    has (the library's ``Config.sign`` / ``verify`` call ``hash(model_path)``)."""

    def __init__(self, build):
        self._build = build
        self.extra_ignore: list[str] = []
        self.called = False

    def add_ignored_paths(self, *, model_path, paths) -> None:  # verify: the statement's ignore_paths
        self.extra_ignore += [str(p) for p in paths]

    def hash(self, model_path, *, files_to_hash=None):
        self.called = True
        return self._build(tuple(self.extra_ignore))


def _has_links(directory: Path, names) -> bool:
    return any((Path(directory) / n).is_symlink() for n in names)


# ---------------------------------------------------------------------- sign / check

def sign(directory: Path, manifest: mf.Manifest, key: Path, cert: Path | None = None,
         password: bytes | None = None) -> SignResult:
    """Write ``directory/model.sig`` over the manifest's (verified) part digests.
    ``cert``: a PEM file, the signing certificate first, then its chain. Raises
    :class:`UsageError` (key not EC / unreadable / wrong passphrase, certificate not the
    key's), :class:`IntegrityError` (files the signature would not cover: move them out)."""
    directory = Path(directory)
    priv = _load_private(key, password)
    curve, algo = _ec_facts(priv.public_key(), key)
    names = directory_files(directory)
    parts = {f.name for f in manifest.files}
    stray = [n for n in names if n not in parts]
    if stray:
        raise IntegrityError(f"{directory} holds files that are not parts of the model: {', '.join(stray)}; "
                             "nothing signed", hint=f"move them out of {directory}, then sign again")
    files = {f.name: f.sha256 for f in manifest.files}
    lib_manifest = _lib_manifest(directory.resolve().name, files, IGNORED, _has_links(directory, files))
    signer = f"key sha256:{key_hint(priv.public_key())}"
    import model_signing.signing as ms  # 1.7 s of imports (sigstore): only sign / check pay them

    cfg = ms.Config().set_hashing_config(_Given(lambda _ign: lib_manifest))
    if cert is not None:
        if password is not None:
            raise UsageError("model-signing 1.1 loads the private key of a certificate signer without a passphrase",
                             hint="use an unencrypted key for --cert signing (kept on the signing machine only)")
        leaf, chain = _split_chain(Path(cert).expanduser())
        signer = "certificate " + leaf[1]
        cert_dir = tempfile.TemporaryDirectory(prefix="ossctl-sign-")
        leaf_path, chain_path = Path(cert_dir.name, "leaf.pem"), Path(cert_dir.name, "chain.pem")
        leaf_path.write_bytes(leaf[0])
        chain_path.write_bytes(chain)
        use = lambda: cfg.use_certificate_signer(private_key=Path(key).expanduser(), signing_certificate=leaf_path,
                                                 certificate_chain=[chain_path] if chain else [])
    else:
        cert_dir = None
        use = lambda: cfg.use_elliptic_key_signer(private_key=Path(key).expanduser(), password=password)
    with tempfile.TemporaryDirectory(prefix="ossctl-sign-") as tmp:
        try:
            use()
            cfg.sign(directory, Path(tmp, SIG_NAME))
        except ValueError as exc:  # the library: a certificate not matching the key, ...
            raise UsageError(f"cannot sign with {key}: {exc}") from None
        finally:
            if cert_dir is not None:
                cert_dir.cleanup()
        data = Path(tmp, SIG_NAME).read_bytes()
    try:
        atomic_write(sig_path(directory), data)
    except OSError as exc:
        raise OssctlError(f"cannot write {sig_path(directory)}: {exc.strerror}",
                          hint="check free space and permissions, then sign again") from None
    ordered = [f.name for f in manifest.files]
    return SignResult(sig_path(directory), signer, algo, {n: files[n] for n in ordered},
                      hashing.composite_sha256([files[n] for n in ordered]))


def _split_chain(path: Path) -> tuple[tuple[bytes, str], bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise NotFoundError(f"certificate {path} does not exist") from None
    except ValueError:
        raise UsageError(f"{path} holds no PEM certificate",
                         hint="pass a PEM file: the signing certificate first, then its chain") from None
    pem = [c.public_bytes(serialization.Encoding.PEM) for c in certs]
    return (pem[0], certs[0].subject.rfc4514_string()), b"".join(pem[1:])


def check(directory: Path, manifest: mf.Manifest, trust: Trust, require: bool = False) -> SignatureCheck:
    """Check ``directory/model.sig`` (when present) against ``trust`` and the files:
    the signer must be trusted, every file covered with the digest it has (parts: the
    verified manifest's digests, no re-read). ``require``: no bundle is a failure.
    Without trust given, the digests are still compared and the signer reported
    ("unverified"). Never raises for a bad signature: the result says it (``ok``,
    ``problems``); raises :class:`UsageError` / :class:`NotFoundError` for unusable trust
    material."""
    return check_files(directory, {f.name: f.sha256 for f in manifest.files}, trust, require)


def check_files(directory: Path, known: dict[str, str], trust: Trust, require: bool = False) -> SignatureCheck:
    """:func:`check` with the parts' digests given as ``{name: sha256}`` (``adopt``: the
    ones it has just computed, before any manifest is written)."""
    directory = Path(directory)
    st, res = authenticate(directory, trust, require)
    if st is None:
        return res
    ignore = tuple(dict.fromkeys((*st.ignore_paths, SIG_NAME)))
    actual = actual_digests(directory, known, ignore)
    if res.status != "failed":
        res.problems = compare(st.files, actual)
        if res.problems:
            res.status = "failed"
    return res


def authenticate(directory: Path, trust: Trust, require: bool = False) -> tuple[Statement | None, SignatureCheck]:
    """Read ``directory/model.sig`` and, when ``trust`` is given, let the library check
    that a trusted signer signed it (the files are not looked at: see :func:`check`,
    and the fleet, which compares each host's digests with the statement). Returns the
    statement (None when absent or unreadable) and the result so far."""
    path = sig_path(directory)
    if not path.exists():
        if require or trust.given:
            return None, SignatureCheck("failed", problems=[{"file": SIG_NAME, "kind": "signature",
                                                              "detail": "the model is not signed (no model.sig)"}])
        return None, SignatureCheck("unsigned")
    try:
        st = read_statement(path)
    except IntegrityError as exc:
        return None, SignatureCheck("failed", problems=[{"file": SIG_NAME, "kind": "signature", "detail": exc.message}])
    res = SignatureCheck("unverified", signed_by=st.signed_by, algorithm=st.algorithm,
                         composite_sha256=_safe_composite(st))
    if not trust.given:
        if require:
            res.status = "failed"
            res.problems = [{"file": SIG_NAME, "kind": "signature",
                             "detail": "a signature is required but no trusted key or identity is configured"}]
        return st, res
    why = _verify(Path(directory), path, st, trust, res)
    if why:
        res.status = "failed"
        res.problems = [{"file": SIG_NAME, "kind": "signature", "detail": why}]
    else:
        res.status = "verified"
    return st, res


def _safe_composite(st: Statement) -> str | None:
    try:
        return st.composite_sha256()
    except OssctlError:
        return None


def _verify(directory: Path, path: Path, st: Statement, trust: Trust, res: SignatureCheck) -> str:
    """Let the library check the bundle's signature; fills ``res.trusted`` / ``algorithm``.
    Returns why it does not hold ("" when it does). The library is handed the statement's
    own digests: whether the files match is :func:`compare`'s job, which names them."""
    attempts: list[tuple[str, Any, str | None]] = []  # (what, configure(cfg), algorithm)
    if st.kind == "key" and trust.keys:
        for k in trust.keys:
            pub = _load_public(k)
            _, algo = _ec_facts(pub, k)
            if st.key_hint is None or key_hint(pub) == st.key_hint:
                attempts.append((str(k), lambda cfg, k=k: cfg.use_elliptic_key_verifier(public_key=k), algo))
        if not attempts:
            return (f"signed by another key ({st.signed_by[:28]}…), not one of the trusted keys "
                    f"({', '.join(str(k) for k in trust.keys)})")
    elif st.kind == "certificate" and trust.cert_chain:
        attempts.append((", ".join(map(str, trust.cert_chain)),
                         lambda cfg: cfg.use_certificate_verifier(certificate_chain=list(trust.cert_chain)), None))
    elif st.kind == "sigstore" and trust.identity and trust.oidc_issuer:
        attempts.append((f"{trust.identity} ({trust.oidc_issuer})",
                         lambda cfg: cfg.use_sigstore_verifier(identity=trust.identity, oidc_issuer=trust.oidc_issuer),
                         None))
    else:
        have = {"key": "public keys (--signer / [signature] keys)", "certificate": "a certificate chain (--cert-chain)",
                "sigstore": "a Sigstore identity and OIDC issuer (--cert-identity / --cert-oidc-issuer)"}[st.kind]
        return f"signed by {st.signed_by}: checking it needs {have}"

    import model_signing.verifying as mv  # 1.7 s of imports (sigstore): only sign / a signature check pay them

    def build(extra_ignore: tuple[str, ...]):
        return _lib_manifest(directory.resolve().name, st.files, extra_ignore, False)

    last = ""
    for what, configure, algo in attempts:
        given = _Given(build)
        cfg = configure(mv.Config()).set_hashing_config(given)
        try:
            cfg.verify(directory, path)
        except Exception as exc:  # noqa: BLE001 - the library raises ValueError, InvalidSignature, OpenSSL errors
            if not given.called:  # hash() comes after the signature held
                last = f"the signature does not verify with {what}: {str(exc) or type(exc).__name__}"
                continue
            last = f"the statement does not hold together: {exc}"
            continue
        res.trusted, res.algorithm = what, algo or res.algorithm
        return ""
    return last
