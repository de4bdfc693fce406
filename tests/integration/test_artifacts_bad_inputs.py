"""Issue 26, model directories and the hub (items 9, 19, 20, 21): symlinks out of the
directory, a FIFO named ``x.gguf``, an extra ``.gguf`` or a directory named ``dir.gguf``,
hostile hub file names and sizes, a 404. Each test checks the exit code, the one error
line, and that nothing on disk was lost (against the local hub server with the real
huggingface_hub client)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from ossctl.artifacts import manifest as mf
from tests.plugins.hub import REPO_120B, model_dir, names
from tests.support.cli import run_cli

from tests.integration.test_artifacts_hardening import error_line, snapshot


def _copy(parts: list[Path], d: Path) -> Path:
    d.mkdir(parents=True)
    for p in parts:
        shutil.copy2(p, d / p.name)
    return d


def _no_hang(fn, timeout: float = 20):
    """``fn()`` in a thread; fails (instead of hanging the suite) when it blocks."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked"
    return box["r"]


# --- 9. a directory of symlinks to elsewhere ---------------------------------------------

def test_adopt_verify_and_deploy_refuse_symlinks_out_of_the_model_directory(home, tiny120_parts, tmp_path):
    real = _copy(tiny120_parts, tmp_path / "real")
    links = tmp_path / "links"
    links.mkdir()
    for p in tiny120_parts:
        (links / p.name).symlink_to(real / p.name)
    before = snapshot(real)
    r = run_cli("adopt", str(links), "--repo", REPO_120B, "--offline")
    assert r.code == 4, r.err
    line = error_line(r)
    assert f"{names()[0]} is a symlink to {real / names()[0]}, outside {links}" in line and "nothing written" in line
    assert "hint: copy the parts into" in r.err and "cp --dereference" in r.err
    assert not mf.manifest_path(links).exists()

    # a manifest written before (or by hand) does not make it servable: verify and deploy say so
    assert run_cli("adopt", str(real), "--repo", REPO_120B, "--offline").code == 0
    shutil.copy2(mf.manifest_path(real), mf.manifest_path(links))
    v = run_cli("verify", str(links))
    assert v.code == 4
    fails = [ln for ln in v.out.splitlines() if ln.startswith("FAIL")]
    assert len(fails) == 3 and fails[0].startswith(f"FAIL layout: {names()[0]}: is a symlink to {real}")
    prof = home / "profiles"
    prof.mkdir()
    (prof / "linked.toml").write_text(f'model = "{links}"\nimage = "x:y"\nctx = 512\ngpus = "none"\n')
    d = run_cli("deploy", "-p", "linked", env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert d.code == 4, d.err  # refused before any engine is asked, not exit 7 from inside a container
    assert "is a symlink to" in error_line(d) and "cp --dereference" in d.err
    # links inside the directory, by relative path, are fine (the container sees them)
    inside = _copy(tiny120_parts, tmp_path / "inside")
    os.rename(inside / names()[2], inside / "store.bin")
    (inside / names()[2]).symlink_to("store.bin")
    assert run_cli("adopt", str(inside), "--repo", REPO_120B, "--offline").code == 0
    assert run_cli("verify", str(inside), "--full").code == 0
    assert {k: v for k, v in snapshot(real).items() if k != "manifest.toml"} == \
           {k: v for k, v in before.items() if k != "manifest.toml"}


# --- 19. a FIFO named x.gguf ------------------------------------------------------------

def test_a_fifo_named_gguf_never_blocks_adopt_hash_or_verify(home, tiny120_parts, tmp_path):
    d = _copy(tiny120_parts, tmp_path / "m")
    fifo = d / "x.gguf"
    os.mkfifo(fifo)
    before = snapshot(d)
    r = _no_hang(lambda: run_cli("adopt", str(d), "--repo", REPO_120B, "--offline"))
    assert r.code == 4
    assert error_line(r) == "error: x.gguf is a FIFO (named pipe), not a regular file; nothing written"
    assert f"hint: move x.gguf out of {d}" in r.err
    h = _no_hang(lambda: run_cli("hash", str(fifo)))
    assert h.code == 4 and error_line(h) == "error: x.gguf is a FIFO (named pipe), not a regular file"
    h = _no_hang(lambda: run_cli("hash", str(d)))
    assert h.code == 4 and "x.gguf is a FIFO" in error_line(h)
    # a manifest from before the FIFO appeared: verify lists it as an extra file, and does not open it
    os.unlink(fifo)
    assert run_cli("adopt", str(d), "--repo", REPO_120B, "--offline").code == 0
    os.mkfifo(fifo)
    v = _no_hang(lambda: run_cli("verify", str(d), "--full"))
    assert v.code == 4 and "FAIL extra: x.gguf: not part of this model" in v.out
    assert fifo.exists() and {k: v for k, v in snapshot(d).items() if k != "manifest.toml"} == before


# --- 20. an extra .gguf: adopt and download agree; a directory named dir.gguf ------------

def test_extra_gguf_is_exit_4_in_adopt_as_in_download(home, hub, tiny120_parts, tmp_path):
    d = _copy(tiny120_parts, tmp_path / "m")
    (d / "notes.gguf").write_bytes(b"GGUF stray")
    before = snapshot(d)
    a = run_cli("adopt", str(d), "--repo", REPO_120B, "--offline")
    dl = run_cli("download", "120b", "--dir", str(d))
    assert a.code == dl.code == 4, (a.err, dl.err)
    assert "notes.gguf" in error_line(a) and "notes.gguf" in error_line(dl)
    assert "move other .gguf files out of" in a.err
    assert snapshot(d) == before and not mf.manifest_path(d).exists()


def test_a_directory_named_dir_gguf_is_not_a_model_file(home, hub, tiny120_parts, tmp_path):
    d = _copy(tiny120_parts, tmp_path / "m")
    (d / "dir.gguf").mkdir()
    (d / "dir.gguf" / "README").write_text("not a model")
    r = run_cli("adopt", str(d), "--repo", REPO_120B, "--offline")
    assert r.code == 0, r.err
    assert [f.name for f in mf.read_manifest(d).files] == names()
    assert run_cli("verify", str(d), "--full").code == 0
    assert run_cli("hash", str(d)).code == 0
    assert run_cli("download", "120b", "--dir", str(d)).code == 0
    assert (d / "dir.gguf" / "README").read_text() == "not a model"


# --- 21. hostile hub file names, a negative size, a 404 --------------------------------

@pytest.mark.parametrize("bad", ["evil\x1b[31mred-00001-of-00001.gguf", "a\nb.gguf", "x\u202egguf.exe.gguf"])
def test_hub_file_names_with_control_characters_are_refused_escaped(home, hub, tiny120_parts, bad):
    hub.add_repo("acme/evil", [tiny120_parts[0]], names=[bad])
    r = run_cli("download", "acme/evil", "--include", "*.gguf")
    assert r.code == 2
    line = error_line(r)
    assert f"refusing hub file name {bad!r}: it holds control characters" in line
    assert not any(c in r.err for c in "\x1b\u202e") and r.err.count("\n") <= 2
    d = model_dir(home).parent.parent / "acme" / "evil"
    assert not d.exists() or not [p for p in d.rglob("*") if p.name != ".ossctl.lock"]
    assert sum(hub.bytes_sent.values()) == 0


def test_a_listing_of_hostile_names_is_printed_escaped(home, hub, tiny120_parts):
    bad = "evil\x1b[2Jclear.gguf"
    hub.add_repo("acme/listing", [tiny120_parts[0]], names=[bad])
    r = run_cli("download", "acme/listing", "--include", "nothing-matches*")
    assert r.code == 3 and "\x1b" not in r.err
    assert repr(bad) in r.err


def test_a_negative_hub_size_is_one_line_and_leaves_no_files(home, hub):
    hub.faults.listed_size[names()[1]] = -5
    r = run_cli("download", "120b")
    assert r.code == 5
    assert f"the hub gave size -5 for {names()[1]}, which is not a byte count; nothing fetched" in error_line(r)
    d = model_dir(home)
    assert not d.exists() or [p.name for p in d.iterdir() if p.name != ".ossctl.lock"] == []
    hub.faults.listed_size.clear()
    assert run_cli("download", "120b").code == 0


def test_a_404_leaves_no_empty_partials(home, hub):
    hub.faults.status.append((r"/resolve/.*-00002-of-", 404, -1))
    r = run_cli("download", "120b", "--workers", "1")
    assert r.code == 3 and f"{names()[1]}: not found on the hub (HTTP 404)" in error_line(r)
    d = model_dir(home)
    leftovers = sorted(p.name for p in d.iterdir() if p.name != ".ossctl.lock")
    assert not [n for n in leftovers if n.endswith(".part") and (d / n).stat().st_size == 0], leftovers
    assert not [n for n in leftovers if n.endswith(".part.json") and not (d / n[:-5]).exists()], leftovers
    # what was fetched whole is kept and not fetched again
    hub.faults.status.clear()
    hub.reset_counters()
    assert run_cli("download", "120b").code == 0
    assert hub.sent(names()[0]) == 0 or names()[0] + ".part" in leftovers
