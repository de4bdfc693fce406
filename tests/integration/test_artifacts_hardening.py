"""Issue 13, artifacts: bad inputs around model directories (items 1-8) and
``ossctl adopt``, against the local hub server with the real huggingface_hub client.
Each test checks the exit code, the one error line, and that nothing on disk was lost."""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from pathlib import Path

import pytest

from ossctl.artifacts import manifest as mf
from tests.plugins.hub import PREFIX_120B, REPO_120B, model_dir, names, sha, start_download_proc, wait_for_partial
from tests.support.cli import run_cli


def snapshot(d: Path) -> dict[str, str]:
    """Every file in ``d`` and its SHA-256 (what must survive a refused command)."""
    return {p.relative_to(d).as_posix(): sha(p) for p in sorted(d.rglob("*")) if p.is_file()
            and p.name != ".ossctl.lock"}


def error_line(r) -> str:
    """The single ``error:`` line (plus at most a hint) and no traceback."""
    lines = r.err.strip().splitlines()
    errs = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errs) == 1 and "Traceback" not in r.err, r.err
    return errs[0]


# --- 1. two downloads into one directory ---------------------------------------------

def test_second_download_into_a_busy_directory_exits_6_naming_the_holder(home, hub, tiny120_parts):
    hub.faults.delay_per_chunk = 0.01  # slow enough that the first is still running
    first = start_download_proc(home, hub.url)
    wait_for_partial(model_dir(home) / (names()[0] + ".part"), 1)
    second = run_cli("download", "120b")
    assert second.code == 6
    line = error_line(second)
    assert f"in use by another ossctl download {REPO_120B} (pid {first.pid}, since " in line
    hub.faults.delay_per_chunk = 0
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert run_cli("verify", "120b", "--full").code == 0  # the first download's files are whole


# --- 2. another repo into a model directory ------------------------------------------

def test_download_of_another_repo_into_a_model_directory_is_refused(home, hub, tiny120_parts):
    assert run_cli("download", "120b").code == 0
    before = snapshot(model_dir(home))
    hub.add_repo("acme/other", tiny120_parts)
    r = run_cli("download", "acme/other", "--dir", str(model_dir(home)))
    assert r.code == 6
    line = error_line(r)
    assert REPO_120B in line and "acme/other" in line and "refusing" in line
    assert snapshot(model_dir(home)) == before
    assert run_cli("verify", "120b").code == 0


# --- 3. a stray .gguf ----------------------------------------------------------------

def test_stray_gguf_is_named_with_what_to_do(home, hub):
    assert run_cli("download", "120b").code == 0
    d = model_dir(home)
    (d / "notes.gguf").write_bytes(b"GGUF stray")
    before = snapshot(d)
    r = run_cli("download", "120b")
    assert r.code == 4
    assert "notes.gguf" in error_line(r) and "not part of" in r.err and "hint: move notes.gguf out of" in r.err
    v = run_cli("verify", "120b")
    assert v.code == 4 and "FAIL extra: notes.gguf: not part of this model: move it out of" in v.out
    with pytest.raises(Exception) as info:
        mf.require_verified(d)
    assert "move notes.gguf out of" in info.value.hint and "download" not in info.value.hint
    assert snapshot(d) == before  # nothing moved or deleted behind the user's back


# --- 4. one .bad copy per corrupt source ---------------------------------------------

def test_reruns_against_a_corrupt_source_keep_one_bad_copy(home, hub, tiny120_parts):
    bad = tiny120_parts[1]
    hub.faults.corrupt.add(bad.name)
    first = run_cli("download", "120b")
    assert first.code == 4 and "kept aside as" in error_line(first)
    second = run_cli("download", "120b")
    assert second.code == 4
    assert "the same bad bytes are already kept aside as" in error_line(second)
    aside = list(model_dir(home).glob(bad.name + ".bad-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == bad.stat().st_size
    # what the runs fetched of the other parts is kept (whole, or as a partial to resume)
    for n in (names()[0], names()[2]):
        kept = [p for p in (model_dir(home) / n, model_dir(home) / (n + ".part")) if p.exists()]
        assert kept, n
    hub.faults.corrupt.clear()
    assert run_cli("download", "120b").code == 0
    assert len(list(model_dir(home).glob(bad.name + ".bad-*"))) == 1


# --- 5. manifest shape and self-consistency ------------------------------------------

def test_manifest_of_the_wrong_shape_and_one_that_does_not_add_up(home, hub):
    assert run_cli("download", "120b").code == 0
    d = model_dir(home)
    path = mf.manifest_path(d)
    good = path.read_text()
    path.write_text('repo = "x/y"\ncomposite_sha256 = "00"\nfiles = ["a", "b"]\n')
    r = run_cli("verify", "120b")
    assert r.code == 4
    assert "is not an ossctl manifest: files[1] is not a table" in error_line(r)
    assert "ossctl adopt" in r.err
    doc = tomllib.loads(good)
    tampered = good.replace(doc["composite_sha256"], "ab" * 32)
    path.write_text(tampered)
    r = run_cli("verify", "120b")  # the quick verify: no file is re-hashed
    assert r.code == 4 and "FAIL manifest: manifest.toml: its per-file hashes give composite " \
                           f"{doc['composite_sha256']}, it records {'ab' * 32}" in r.out
    # adopt rewrites it from the files, which were never touched
    r = run_cli("adopt", str(d), "--repo", REPO_120B)
    assert r.code == 0, r.err
    assert mf.read_manifest(d).composite_sha256 == doc["composite_sha256"]
    assert run_cli("verify", "120b", "--full").code == 0


# --- 6. hash checks GGUF magic and split keys ----------------------------------------

def test_hash_refuses_non_gguf_and_parts_of_two_models(home, tmp_path, tiny120_parts):
    hello = tmp_path / "hello.gguf"
    hello.write_bytes(b"hello\n")
    r = run_cli("hash", str(hello))
    assert r.code == 4 and "hello.gguf is not a GGUF file (bad magic)" in error_line(r)
    from tests.support.ggufgen import write_model

    other = write_model(tmp_path / "other", PREFIX_120B, parts=3, n_layer=3)
    mixed = [tiny120_parts[0], other[1], tiny120_parts[2]]
    r = run_cli("hash", *map(str, mixed))
    assert r.code == 4
    assert "the parts come from different models" in error_line(r)
    r = run_cli("hash", str(tiny120_parts[0]), str(tmp_path / "x"))
    assert r.code == 3
    two_sets = write_model(tmp_path / "two", "other", parts=2)
    r = run_cli("hash", *map(str, [*tiny120_parts, *two_sets]))
    assert r.code == 2 and "more than one split set" in error_line(r) and "--include" not in r.err
    assert hello.read_bytes() == b"hello\n" and all(p.exists() for p in mixed)


# --- 7. --include selecting part of a split set --------------------------------------

def test_include_that_cuts_a_split_set_says_to_fix_the_pattern(home, hub):
    r = run_cli("download", "120b", "--include", "*00001*")
    assert r.code == 2
    line = error_line(r)
    assert "--include *00001* selects an incomplete split set: missing" in line and names()[1] in line
    assert "hint: drop --include" in r.err and "re-run" not in r.err
    assert sum(hub.bytes_sent.values()) == 0


def test_hub_missing_a_part_is_not_fixed_by_downloading_again(home, hub, tiny120_parts):
    hub.add_repo("acme/broken", [tiny120_parts[0], tiny120_parts[2]])
    r = run_cli("download", "acme/broken")
    assert r.code == 4 and f"missing {names()[1]}" in error_line(r)
    assert "--revision" in r.err and "re-run" not in r.err


# --- 8. any 404 is "not found" -------------------------------------------------------

def test_a_404_or_400_is_not_found_or_bad_input_never_try_later(home, hub):
    hub.faults.status.append((r"^/api/models/", 404, -1))
    r = run_cli("download", "120b", "--revision", "deadbeef")
    assert r.code == 3
    assert f"{REPO_120B} at revision 'deadbeef' not found" in error_line(r) and "--revision" in r.err
    hub.faults.status[:] = [(r"^/api/models/", 400, -1)]
    r = run_cli("download", "120b", "--revision", "no such rev")
    assert r.code == 2 and "rejected the request" in error_line(r) and "try again later" not in r.err
    assert not model_dir(home).exists() or not list(model_dir(home).glob("*.gguf"))


# --- adopt ---------------------------------------------------------------------------

def _copy_parts(parts: list[Path], d: Path) -> Path:
    d.mkdir(parents=True)
    for p in parts:
        shutil.copy2(p, d / p.name)
    return d


def test_adopt_fresh_directory_hub_agrees_then_verify_and_download_reuse(home, hub, tiny120_parts, tmp_path):
    d = _copy_parts(tiny120_parts, tmp_path / "wget")
    before = snapshot(d)
    r = run_cli("--json", "adopt", str(d), "--repo", REPO_120B)
    assert r.code == 0, r.err
    data = r.json()
    assert list(data) == ["repo", "revision", "dir", "files", "composite_sha256", "model_id", "hub", "signature"]
    assert data["hub"] == {"status": "agreed", "detail": None}
    assert "the Hub agrees" in r.err and "error" not in r.err
    assert data["revision"] == hub.commit_of(REPO_120B, "main")
    m = mf.read_manifest(d)
    assert m.hub_check == "agreed" and m.composite_sha256 == data["composite_sha256"] and m.gguf["parts"] == 3
    assert {k: v for k, v in snapshot(d).items() if k != "manifest.toml"} == before
    assert run_cli("verify", str(d)).code == 0
    hub.reset_counters()
    dl = run_cli("--json", "download", "120b", "--dir", str(d))
    assert dl.code == 0 and dl.json()["transferred"] == 0 and sum(hub.bytes_sent.values()) == 0


def test_adopt_when_the_hub_disagrees_writes_nothing(home, hub, tiny120_parts, tmp_path):
    d = _copy_parts(tiny120_parts, tmp_path / "copy")
    p2 = d / names()[1]
    data = bytearray(p2.read_bytes())
    data[-1] ^= 0xFF  # still a valid GGUF header, different bytes
    p2.write_bytes(data)
    before = snapshot(d)
    r = run_cli("adopt", str(d), "--repo", REPO_120B)
    assert r.code == 4
    line = error_line(r)
    assert f"{names()[1]}: sha256 " in line and "!= the Hub's" in line and "nothing written" in line
    assert f"ossctl download {REPO_120B} --dir {d}" in r.err
    assert not mf.manifest_path(d).exists() and snapshot(d) == before


def test_adopt_when_the_hub_is_unreachable_says_so_and_records_local_hashes(home, hub, tiny120_parts, tmp_path,
                                                                              monkeypatch):
    d = _copy_parts(tiny120_parts, tmp_path / "airgap")
    before = snapshot(d)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    r = run_cli("--json", "adopt", str(d), "--repo", REPO_120B, env={"OSSCTL_DOWNLOAD_RETRIES": "0"})
    assert r.code == 0, r.err
    assert r.json()["hub"]["status"] == "unreachable" and "cannot reach the hub" in r.json()["hub"]["detail"]
    warn = [ln for ln in r.err.splitlines() if ln.startswith("warning: ")]
    assert len(warn) == 1 and "could not check against the Hub" in warn[0] and "local hashes only" in warn[0]
    m = mf.read_manifest(d)
    assert m.hub_check == "unchecked" and m.revision is None
    assert m.composite_sha256 == hashlib.sha256("".join(sha(p) for p in tiny120_parts).encode()).hexdigest()
    assert {k: v for k, v in snapshot(d).items() if k != "manifest.toml"} == before
    assert run_cli("verify", str(d), "--full").code == 0


def test_adopt_refuses_an_incomplete_set_and_a_missing_directory(home, hub, tiny120_parts, tmp_path):
    d = _copy_parts(tiny120_parts[:2], tmp_path / "half")
    before = snapshot(d)
    r = run_cli("adopt", str(d), "--repo", REPO_120B)
    assert r.code == 4 and f"missing {names()[2]}" in error_line(r)
    assert not mf.manifest_path(d).exists() and snapshot(d) == before
    r = run_cli("adopt", str(tmp_path / "nope"), "--repo", REPO_120B)
    assert r.code == 3 and "does not exist" in error_line(r)


# --- 16. Ctrl-C says what was kept ---------------------------------------------------

def test_ctrl_c_names_the_partials_kept(home, hub, tiny120_parts):
    import signal

    hub.faults.delay_per_chunk = 0.01
    proc = start_download_proc(home, hub.url)
    part = model_dir(home) / (names()[0] + ".part")
    wait_for_partial(part, 256 << 10)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert len(line) == 1 and f"partial downloads kept in {model_dir(home)}: {part.name} (" in line[0]
    assert line[0].endswith("re-run the same command to resume")
    assert part.stat().st_size >= 256 << 10
