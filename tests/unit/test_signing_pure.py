"""The pure parts of model signing: the profile's [signature] table, the comparison of
signed digests with a directory's, the composite of a signed statement, and that an
unsigned model's verify never imports the signing library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ossctl.artifacts import hashing, signing
from ossctl.errors import UsageError
from ossctl.serve import profiles as P

BASE = {"model": "20b", "image": "img:1", "ctx": 4096}
ROOT = Path(__file__).resolve().parents[2]


def test_signature_table_defaults_and_rules():
    p = P.validate({**BASE, "signature": {"require": True, "keys": ["/etc/ossctl/ops.pub"]}}, "p")
    assert p["signature"] == {"require": True, "keys": ["/etc/ossctl/ops.pub"], "certificate_chain": [],
                              "identity": "", "oidc_issuer": ""}
    assert "signature" not in P.validate(dict(BASE), "p")
    keyless = P.validate({**BASE, "signature": {"require": True, "identity": "ops@example.com",
                                                 "oidc_issuer": "https://accounts.google.com"}}, "p")
    assert signing.Trust.from_profile(keyless["signature"]).identity == "ops@example.com"


@pytest.mark.parametrize("table, msg", [
    ({"require": True}, "needs someone to trust"),
    ({"require": "yes", "keys": ["/k.pub"]}, "`signature.require` must be true or false"),
    ({"keys": "/k.pub"}, "`signature.keys` must be a list of PEM file paths"),
    ({"keys": [""]}, "`signature.keys` must be a list of PEM file paths"),
    ({"identity": "ops@example.com"}, "go together"),
    ({"key": ["/k.pub"]}, "unknown key 'key' in [signature]"),
    ("strict", "`signature` must be a table"),
])
def test_signature_table_refusals(table, msg):
    with pytest.raises(UsageError) as exc:
        P.validate({**BASE, "signature": table}, "p")
    assert msg in exc.value.message


def test_signature_table_merges_along_extends():
    assert "signature" in P.TABLES  # a child may tighten `require` and keep the parent's keys


def test_compare_names_unsigned_changed_and_missing_files():
    signed = {"a.gguf": "1" * 64, "b.gguf": "2" * 64, "c.gguf": "3" * 64}
    actual = {"a.gguf": "1" * 64, "b.gguf": "f" * 64, "notes.txt": "4" * 64}
    assert signing.compare(signed, actual) == [
        {"file": "b.gguf", "kind": "digest", "detail": f"sha256 {'f' * 64} but the signature covers {'2' * 64}"},
        {"file": "notes.txt", "kind": "unsigned", "detail": "not covered by the signature"},
        {"file": "c.gguf", "kind": "missing", "detail": "signed but not in the directory"},
    ]
    assert signing.compare(signed, dict(signed)) == []


def test_statement_composite_is_the_manifest_composite_in_part_order():
    files = {f"m-{i:05d}-of-00003.gguf": f"{i:064x}" for i in (3, 1, 2)}
    st = signing.Statement("key", "key sha256:x", "x", None, files, (), "0" * 64)
    assert st.parts() == ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"]
    assert st.composite_sha256() == hashing.composite_sha256([f"{i:064x}" for i in (1, 2, 3)])


def test_verify_of_an_unsigned_model_does_not_import_the_signing_library(tmp_path):
    code = ("import sys; from tests.plugins.docker_engine import make_model_dir; from pathlib import Path;"
            f"d = make_model_dir(Path({str(tmp_path)!r}) / 'm');"
            "from tests.support.cli import run_cli; r = run_cli('verify', str(d)); assert r.code == 0, r.err;"
            "print([m for m in ('model_signing', 'sigstore') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
