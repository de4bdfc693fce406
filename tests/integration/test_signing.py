"""OpenSSF model signing (model.sig): sign, verify, adopt, deploy and fleet preflight with
keys generated here, and the library's own CLI as the peer verifier of ossctl's bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as S
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.plugins.docker_engine import answer, make_model_dir
from tests.support.cli import run_cli

PARTS = [f"tiny-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
SIG_KEYS = {"status", "signed_by", "algorithm", "trusted", "composite_sha256", "problems"}


def write_key(d: Path, name: str, key, password: bytes | None = None) -> tuple[Path, Path]:
    enc = S.BestAvailableEncryption(password) if password else S.NoEncryption()
    priv, pub = d / f"{name}.pem", d / f"{name}.pub"
    priv.write_bytes(key.private_bytes(S.Encoding.PEM, S.PrivateFormat.PKCS8, enc))
    pub.write_bytes(key.public_key().public_bytes(S.Encoding.PEM, S.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.fixture
def signed(tmp_path):
    """A fresh tiny 3-part model and an EC P-256 key pair."""
    model = make_model_dir(tmp_path / "tiny")
    priv, pub = write_key(tmp_path, "signer", ec.generate_private_key(ec.SECP256R1()))
    return model, priv, pub


def lib_verify(model: Path, pub: Path) -> subprocess.CompletedProcess:
    """The library's own verifier (model-signing's CLI), not ossctl's."""
    return subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", str(model),
                           "--signature", str(model / "model.sig"), "--public_key", str(pub)],
                          capture_output=True, text=True, timeout=120)


def flip_last_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(data)


def test_sign_verify_and_the_library_accepts_the_bundle(signed, tmp_path):
    model, priv, pub = signed
    from ossctl.artifacts.manifest import read_manifest

    m = read_manifest(model)
    r = run_cli("--json", "sign", str(model), "--key", str(priv))
    assert r.code == 0, r.err
    res = r.json()
    assert list(res) == ["signature", "signed_by", "algorithm", "files", "composite_sha256"]
    assert res["signature"] == str(model / "model.sig") and res["algorithm"] == "ecdsa-p256-sha256"
    # the signed digests are the manifest's, and so is their composite
    assert res["files"] == [{"name": f.name, "sha256": f.sha256} for f in m.files]
    assert res["composite_sha256"] == m.composite_sha256
    statement = json.loads(__import__("base64").b64decode(json.loads((model / "model.sig").read_text())
                                                            ["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert {x["name"] for x in statement["predicate"]["resources"]} == set(PARTS)  # manifest.toml not covered
    assert set(statement["predicate"]["serialization"]["ignore_paths"]) == {"manifest.toml", "model.sig", ".ossctl.lock"}

    v = run_cli("--json", "verify", str(model), "--signer", str(pub))
    assert v.code == 0, v.err
    sig = v.json()["signature"]
    assert set(sig) == SIG_KEYS
    assert (sig["status"], sig["algorithm"], sig["trusted"]) == ("verified", "ecdsa-p256-sha256", str(pub))
    assert sig["signed_by"] == res["signed_by"] and sig["composite_sha256"] == m.composite_sha256
    human = run_cli("verify", str(model), "--signer", str(pub))
    assert human.code == 0 and "signature  verified" in human.out and "ecdsa-p256-sha256" in human.out

    # the peer's verifier accepts ossctl's bundle (it skips what the statement says to skip)
    lib = lib_verify(model, pub)
    assert lib.returncode == 0 and "Verification succeeded" in lib.stdout, lib.stderr

    # without a trusted key: the digests are compared, the signer named but not vouched for
    plain = run_cli("--json", "verify", str(model))
    assert plain.code == 0 and plain.json()["signature"]["status"] == "unverified"


def test_another_key_an_added_file_and_a_changed_byte_are_refused(signed, tmp_path):
    model, priv, pub = signed
    assert run_cli("sign", str(model), "--key", str(priv)).code == 0
    _, other = write_key(tmp_path, "other", ec.generate_private_key(ec.SECP256R1()))

    r = run_cli("--json", "verify", str(model), "--signer", str(other))
    assert r.code == 4
    (p,) = r.json()["problems"]
    assert p["kind"] == "signature" and "another key" in p["detail"] and str(other) in p["detail"]
    assert r.json()["signature"]["status"] == "failed"

    # an added file is named, by ossctl and by the library alike
    (model / "notes.txt").write_text("not part of the model\n")
    r = run_cli("--json", "verify", str(model), "--signer", str(pub))
    assert r.code == 4
    assert r.json()["problems"] == [{"file": "notes.txt", "kind": "unsigned", "detail": "not covered by the signature"}]
    h = run_cli("verify", str(model), "--signer", str(pub))
    assert h.code == 4 and "FAIL unsigned: notes.txt: not covered by the signature" in h.out
    assert lib_verify(model, pub).returncode != 0
    (model / "notes.txt").unlink()

    # one changed byte: the manifest check sees it first (the signature is not consulted)
    flip_last_byte(model / PARTS[1])
    r = run_cli("--json", "verify", str(model), "--signer", str(pub))
    assert r.code == 4 and r.json()["problems"][0]["kind"] == "sha256"
    assert r.json()["signature"]["status"] == "skipped"
    # ... and with the manifest rewritten to match the changed bytes, the signature does
    from ossctl.artifacts.local import hash_paths
    from ossctl.artifacts.manifest import write_manifest

    m, _ = hash_paths([model], repo="ossctl-test/tiny-GGUF")
    write_manifest(model, m)
    r = run_cli("--json", "verify", str(model), "--signer", str(pub))
    assert r.code == 4
    (p,) = r.json()["problems"]
    assert p["file"] == PARTS[1] and p["kind"] == "digest" and "the signature covers" in p["detail"]
    assert lib_verify(model, pub).returncode != 0

    # an unsigned model with a signer asked for
    (model / "model.sig").unlink()
    r = run_cli("verify", str(model), "--signer", str(pub))
    assert r.code == 4 and "not signed" in r.out


def test_keys_the_library_cannot_use_and_passphrases(signed, tmp_path):
    model, _, _ = signed
    for name, key, kind in (("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
                            ("ed", ed25519.Ed25519PrivateKey.generate(), "Ed25519")):
        priv, _ = write_key(tmp_path, name, key)
        r = run_cli("sign", str(model), "--key", str(priv))
        assert r.code == 2, r.err
        assert f"is an {kind} key" in r.err and "elliptic-curve keys only" in r.err and "Traceback" not in r.err
        assert not (model / "model.sig").exists()

    # P-384 with an encrypted key: the passphrase comes from the environment, never argv
    secret = "correct horse battery"
    priv, pub = write_key(tmp_path, "p384", ec.generate_private_key(ec.SECP384R1()), secret.encode())
    r = run_cli("sign", str(model), "--key", str(priv))
    assert r.code == 2 and "encrypted" in r.err and "OSSCTL_SIGN_KEY_PASSPHRASE" in r.err
    r = run_cli("sign", str(model), "--key", str(priv), env={"OSSCTL_SIGN_KEY_PASSPHRASE": "wrong one!"})
    assert r.code == 2 and "wrong passphrase" in r.err and "wrong one!" not in r.err + r.out
    r = run_cli("--json", "sign", str(model), "--key", str(priv), env={"OSSCTL_SIGN_KEY_PASSPHRASE": secret})
    assert r.code == 0, r.err
    assert r.json()["algorithm"] == "ecdsa-p384-sha384" and secret not in r.out + r.err
    v = run_cli("--json", "verify", str(model), "--signer", str(pub))
    assert v.code == 0 and v.json()["signature"]["algorithm"] == "ecdsa-p384-sha384"
    assert lib_verify(model, pub).returncode == 0

    # a stray file is refused at signing: the signature would not cover it
    (model / "README.md").write_text("hi\n")
    r = run_cli("sign", str(model), "--key", str(priv), env={"OSSCTL_SIGN_KEY_PASSPHRASE": secret})
    assert r.code == 4 and "README.md" in r.err and "nothing signed" in r.err


def test_adopt_keeps_a_signature_that_matches_and_refuses_one_that_does_not(signed, tmp_path):
    model, priv, pub = signed
    assert run_cli("sign", str(model), "--key", str(priv)).code == 0
    (model / "manifest.toml").unlink()  # files fetched another way, with their model.sig
    r = run_cli("--json", "adopt", str(model), "--repo", "ossctl-test/tiny-GGUF", "--offline", "--signer", str(pub))
    assert r.code == 0, r.err
    assert r.json()["signature"]["status"] == "verified" and "kept model.sig" in r.err
    assert (model / "model.sig").exists()

    # another copy whose bytes differ from the signed ones: nothing written, exit 4
    (model / "manifest.toml").unlink()
    flip_last_byte(model / PARTS[2])
    r = run_cli("adopt", str(model), "--repo", "ossctl-test/tiny-GGUF", "--offline")
    assert r.code == 4, r.err
    assert f"model.sig does not sign these files: {PARTS[2]}" in r.err and "nothing written" in r.err
    assert not (model / "manifest.toml").exists()


@pytest.mark.anvil
def test_registry_status_compares_the_signed_composite(chain, tmp_path):
    _, _, env = chain
    model = make_model_dir(tmp_path / "reg")
    priv, _ = write_key(tmp_path, "k", ec.generate_private_key(ec.SECP256R1()))
    assert run_cli("register", str(model), "--yes", env=env).code == 0
    assert run_cli("sign", str(model), "--key", str(priv)).code == 0
    r = run_cli("--json", "registry", "status", str(model), env=env)
    assert r.code == 0, r.err
    sig = r.json()["signature"]
    assert list(sig) == ["status", "composite_sha256", "signed_by"]
    assert sig["status"] == "match" and sig["composite_sha256"] == r.json()["onchain_sha256"]

    # a bundle that signs other bytes (another model's) next to this manifest: exit 6
    other = make_model_dir(tmp_path / "other", name="other")
    assert run_cli("sign", str(other), "--key", str(priv)).code == 0
    shutil.copy(other / "model.sig", model / "model.sig")
    r = run_cli("--json", "registry", "status", str(model), env=env)
    assert r.code == 6 and r.json()["hash"] == "match" and r.json()["signature"]["status"] == "mismatch"


@pytest.mark.docker
def test_deploy_requires_a_trusted_signature(serve_env, tmp_path):
    env = serve_env
    model = env.home / "signed-model"
    shutil.copytree(env.model_dir, model)  # copy2: mtimes kept, the fast path holds
    priv, pub = write_key(tmp_path, "ops", ec.generate_private_key(ec.SECP256R1()))
    _, other = write_key(tmp_path, "other", ec.generate_private_key(ec.SECP256R1()))
    env.write_profile(model=str(model), signature={"require": True, "keys": [str(pub)]})

    r = run_cli("deploy", "-p", env.profile, env=env.env)
    assert r.code == 4 and "not signed" in r.err and "nothing was changed" in r.err
    assert env.containers() == []

    assert run_cli("sign", str(model), "--key", str(priv)).code == 0
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    first = r.json()
    assert answer(first["endpoint"])["choices"]

    # a policy that trusts another key refuses the same files before anything stops
    env.write_profile(model=str(model), signature={"require": True, "keys": [str(other)]})
    r = run_cli("deploy", "-p", env.profile, env=env.env)
    assert r.code == 4 and "another key" in r.err
    assert answer(first["endpoint"])["choices"]

    # one changed byte, with a manifest rewritten to match it: the signature refuses it
    env.write_profile(model=str(model), signature={"require": True, "keys": [str(pub)]})
    flip_last_byte(model / PARTS[0])
    from ossctl.artifacts.local import hash_paths
    from ossctl.artifacts.manifest import write_manifest

    write_manifest(model, hash_paths([model], repo="ossctl-test/tiny-GGUF")[0])
    r = run_cli("deploy", "-p", env.profile, env=env.env)
    assert r.code == 4 and PARTS[0] in r.err and "the signature covers" in r.err
    assert answer(first["endpoint"])["choices"]
    assert len(env.containers()) == 1


@pytest.mark.docker
def test_fleet_preflight_checks_each_hosts_own_digests_against_the_signature(home, docker_host, llama_image, tmp_path):
    """Two hosts' copies, each hashed where it lies (sha256sum in a container of the
    release image: no model byte travels); only the bundle's digests are compared."""
    import tomli_w

    from ossctl.errors import IntegrityError
    from ossctl.artifacts.manifest import read_manifest
    from ossctl.fleet.rollout import Member, check_host_signature, preflight
    from ossctl.serve.preflight import signed_statement
    from ossctl.serve.profiles import host_profile, resolve_profile
    from ossctl.settings import load_settings

    local = make_model_dir(tmp_path / "local")
    priv, pub = write_key(tmp_path, "ops", ec.generate_private_key(ec.SECP256R1()))
    _, other = write_key(tmp_path, "other", ec.generate_private_key(ec.SECP256R1()))
    hosts = {}
    for h in ("gpu-a", "gpu-b"):  # what each host holds: the parts, no manifest
        hosts[h] = tmp_path / h
        hosts[h].mkdir()
        for n in PARTS:
            shutil.copy2(local / n, hosts[h] / n)
    flip_last_byte(hosts["gpu-b"] / PARTS[1])
    (home / "profiles").mkdir()
    (home / "profiles" / "fleet.toml").write_text(tomli_w.dumps(
        {"extends": "cpu", "image": llama_image, "model": str(local), "ctx": 512,
         "signature": {"require": True, "keys": [str(pub)]}}))
    settings = load_settings()
    prof = resolve_profile(settings, "fleet")
    manifest = read_manifest(local)
    lines: list[str] = []

    with pytest.raises(IntegrityError, match="not signed"):
        signed_statement(prof, local, manifest, lines.append)
    assert run_cli("sign", str(local), "--key", str(priv)).code == 0
    statement = signed_statement(prof, local, manifest, lines.append)
    assert statement is not None and any("signature: verified" in x for x in lines)

    def member(h: str) -> Member:
        return Member(docker_host, host_profile(prof, {"docker_host": docker_host, "model": str(hosts[h])}), "127.0.0.1")

    a = member("gpu-a")
    (row,) = preflight(settings, [a], manifest, lines.append, statement)
    assert row["ok"] and any("its digests are the signed ones" in x for x in lines)
    with pytest.raises(IntegrityError) as exc:
        preflight(settings, [member("gpu-b")], manifest, lines.append, statement)
    assert docker_host in exc.value.message and PARTS[1] in exc.value.message and "nothing was changed" in exc.value.message

    # the per-host comparison itself: a host whose recorded digests are not the signed ones
    digests = {n: rec["sha256"] for n, rec in a.engine.ledger.verified(str(hosts["gpu-a"])).items()}
    assert digests == statement.files
    with pytest.raises(IntegrityError) as exc:
        check_host_signature(a, str(hosts["gpu-a"]), {**digests, PARTS[2]: "0" * 64}, statement)
    assert exc.value.message.startswith(f"{docker_host}: {hosts['gpu-a']}/{PARTS[2]}: sha256 ")

    # a policy trusting another key refuses before any host is asked
    other_prof = prof.replace(signature={**prof["signature"], "keys": [str(other)]})
    with pytest.raises(IntegrityError, match="another key"):
        signed_statement(other_prof, local, manifest, lines.append)


def _cert(subject_cn: str, key, issuer_cn: str, issuer_key, ca: bool):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                      encipher_only=False, decipher_only=False), critical=True))
    return b.sign(issuer_key, hashes.SHA256())


def test_sign_with_a_certificate_chain(signed, tmp_path):
    model, _, _ = signed
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ossctl test CA", ca_key, "ossctl test CA", ca_key, ca=True)
    leaf = _cert("release-signer", leaf_key, "ossctl test CA", ca_key, ca=False)
    priv, _ = write_key(tmp_path, "leaf", leaf_key)
    (tmp_path / "chain.pem").write_bytes(leaf.public_bytes(S.Encoding.PEM) + ca.public_bytes(S.Encoding.PEM))
    (tmp_path / "root.pem").write_bytes(ca.public_bytes(S.Encoding.PEM))
    r = run_cli("--json", "sign", str(model), "--key", str(priv), "--cert", str(tmp_path / "chain.pem"))
    assert r.code == 0, r.err
    assert r.json()["signed_by"] == "certificate CN=release-signer"
    v = run_cli("--json", "verify", str(model), "--cert-chain", str(tmp_path / "root.pem"))
    assert v.code == 0, v.out + v.err
    sig = v.json()["signature"]
    assert (sig["status"], sig["signed_by"], sig["algorithm"]) == ("verified", "certificate CN=release-signer",
                                                                    "ecdsa-p256-sha256")
    # a key is not what signed it: said so, exit 4
    _, pub = write_key(tmp_path, "k", ec.generate_private_key(ec.SECP256R1()))
    v = run_cli("verify", str(model), "--signer", str(pub))
    assert v.code == 4 and "needs a certificate chain" in v.out


def test_bad_input_is_one_line(signed, tmp_path, home):
    model, priv, pub = signed
    assert run_cli("sign", str(model), "--key", str(priv)).code == 0
    cases = [
        (("sign", "120b", "--key", str(priv)), 3, "no manifest in"),
        (("sign", str(model), "--key", str(tmp_path / "absent.pem")), 3, "does not exist"),
        (("sign", str(model), "--key", str(pub)), 2, "is not a PEM private key"),
        (("verify", str(model), "--signer", str(priv)), 2, "is not a PEM public key"),
        (("verify", str(model), "--cert-identity", "ops@example.com"), 2, "go together"),
    ]
    for args, code, line in cases:
        r = run_cli(*args)
        assert (r.code, r.err.count("error:")) == (code, 1), (args, r.err)
        assert line in r.err and "Traceback" not in r.err
    assert not (home / "models").exists() or not any((home / "models").rglob(".ossctl.lock"))
