"""ossctl download / verify / hash against a local hub server with the real
huggingface_hub client, including interruption, resume and fault injection."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading

import pytest

from ossctl.artifacts import manifest as mf
from tests.plugins.hub import REPO_120B, model_dir, names, sha, start_download_proc, wait_for_partial
from tests.support.cli import run_cli

JSON_KEYS = ["repo", "revision", "dir", "files", "composite_sha256", "model_id"]



def test_download_writes_verified_parts_and_manifest(home, hub, tiny120_parts):
    r = run_cli("--json", "download", "120b")
    assert r.code == 0, r.err
    data = r.json()
    assert list(data)[:6] == JSON_KEYS and data["transferred"] == sum(p.stat().st_size for p in tiny120_parts)
    assert [f["name"] for f in data["files"]] == names()
    assert set(data["files"][0]) == {"name", "size", "sha256"}
    digests = [sha(p) for p in tiny120_parts]
    assert [f["sha256"] for f in data["files"]] == digests
    assert data["composite_sha256"] == hashlib.sha256("".join(digests).encode()).hexdigest()
    assert data["revision"] == hub.commit_of(REPO_120B, "main")
    m = mf.read_manifest(model_dir(home))
    assert m.composite_sha256 == data["composite_sha256"] and m.model_id == data["model_id"]
    assert m.gguf["parts"] == 3
    assert not list(model_dir(home).glob("*.part*"))


def test_rerun_transfers_nothing(home, hub):
    assert run_cli("download", "120b").code == 0
    hub.reset_counters()
    r = run_cli("--json", "download", "120b")
    assert r.code == 0 and r.json()["transferred"] == 0
    assert sum(hub.bytes_sent.values()) == 0
    assert "already complete" in r.err
    # only the model info call reached the hub
    assert [p for _, p, _ in hub.requests] == [f"/api/models/{REPO_120B}"]


def test_branch_is_pinned_to_commit_and_new_commit_is_fetched(home, hub, tiny120_parts, tmp_path):
    assert run_cli("download", "120b").code == 0
    first = mf.read_manifest(model_dir(home)).revision
    # publish a new commit where part 3 changed
    changed = tmp_path / names()[2]
    changed.write_bytes(tiny120_parts[2].read_bytes())
    hub.add_repo(REPO_120B, [tiny120_parts[0], tiny120_parts[1], changed], commit="c" * 40)
    hub.reset_counters()
    r = run_cli("--json", "download", "120b")
    assert r.code == 0
    assert r.json()["revision"] == "c" * 40 != first
    assert run_cli("--json", "download", "120b", "--revision", first).json()["revision"] == first


def test_dropped_connection_is_resumed_in_the_same_run(home, hub, tiny120_parts):
    big = tiny120_parts[0]
    hub.faults.drop_after[big.name] = 1 << 20
    r = run_cli("download", "120b")
    assert r.code == 0, r.err
    # the retry continued with Range: every byte crossed the wire exactly once
    assert hub.sent(big.name) == big.stat().st_size
    ranges = [h.get("range") for m, p, h in hub.requests if p.startswith("/cdn/") and h.get("range")]
    assert ranges == [f"bytes={1 << 20}-"]


def test_failed_run_keeps_partial_and_next_run_fetches_only_the_rest(home, hub, tiny120_parts):
    big = tiny120_parts[0]
    hub.faults.drop_after[big.name] = 1 << 20
    r = run_cli("download", "120b", env={"OSSCTL_DOWNLOAD_RETRIES": "0"})
    assert r.code == 5
    assert "kept" in r.err and "re-run" in r.err and "Traceback" not in r.err
    part = model_dir(home) / (big.name + ".part")
    assert part.stat().st_size == 1 << 20
    assert not mf.manifest_path(model_dir(home)).exists()
    hub.reset_counters()
    r = run_cli("download", "120b")
    assert r.code == 0, r.err
    assert hub.sent(big.name) == big.stat().st_size - (1 << 20)
    assert sha(model_dir(home) / big.name) == sha(big)


@pytest.mark.parametrize("sig,code", [(signal.SIGKILL, -9), (signal.SIGINT, 130)])
def test_killed_process_resumes_without_refetching(home, hub, tiny120_parts, sig, code):
    big = tiny120_parts[0]
    hub.faults.delay_per_chunk = 0.01  # ~6 MB/s: slow enough to interrupt mid-file
    proc = start_download_proc(home, hub.url)
    part = model_dir(home) / (big.name + ".part")
    wait_for_partial(part, 256 << 10)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    if sig == signal.SIGINT:
        assert "Traceback" not in err
    kept = part.stat().st_size
    assert 0 < kept < big.stat().st_size
    hub.faults.delay_per_chunk = 0
    hub.reset_counters()
    r = run_cli("download", "120b")
    assert r.code == 0, r.err
    assert hub.sent(big.name) == big.stat().st_size - kept
    assert sha(model_dir(home) / big.name) == sha(big)


def test_corrupt_transfer_is_kept_aside_and_named(home, hub, tiny120_parts):
    bad = tiny120_parts[1]
    hub.faults.corrupt.add(bad.name)
    r = run_cli("download", "120b")
    assert r.code == 4
    assert bad.name in r.err and "kept aside" in r.err
    aside = list(model_dir(home).glob(bad.name + ".bad-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == bad.stat().st_size
    hub.faults.corrupt.clear()
    assert run_cli("download", "120b").code == 0
    assert sha(model_dir(home) / bad.name) == sha(bad)
    assert aside[0].exists()  # never deleted


def test_verify_detects_missing_extra_size_and_hash(home, hub):
    assert run_cli("download", "120b").code == 0
    d = model_dir(home)
    ok = run_cli("--json", "verify", "120b")
    assert ok.code == 0 and ok.json()["ok"] is True and ok.json()["problems"] == []
    assert set(ok.json()) == set(JSON_KEYS) | {"ok", "problems", "signature"}
    p2 = d / names()[1]
    data = bytearray(p2.read_bytes())
    data[-1] ^= 0xFF
    p2.write_bytes(data)  # same size, new mtime: the fast path must re-hash it
    (d / names()[2]).unlink()
    (d / "stray-00001-of-00001.gguf").write_bytes(b"GGUF")
    r = run_cli("--json", "verify", str(d))
    assert r.code == 4
    kinds = {(p["file"], p["kind"]) for p in r.json()["problems"]}
    assert kinds == {(names()[1], "sha256"), (names()[2], "missing"), ("stray-00001-of-00001.gguf", "extra")}


def test_verify_fast_path_trusts_size_and_mtime_unless_full(home, hub):
    assert run_cli("download", "120b").code == 0
    p1 = model_dir(home) / names()[0]
    st = p1.stat()
    data = bytearray(p1.read_bytes())
    data[-1] ^= 0xFF
    p1.write_bytes(data)
    os.utime(p1, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size + mtime: fast path cannot see it
    assert run_cli("verify", "120b").code == 0
    r = run_cli("verify", "120b", "--full")
    assert r.code == 4 and "FAIL sha256" in r.out


def test_hash_command_matches_download(home, hub, tiny120_parts):
    d = run_cli("--json", "download", "120b").json()
    h = run_cli("--json", "hash", str(model_dir(home)))
    assert h.code == 0
    assert h.json()["composite_sha256"] == d["composite_sha256"]
    assert h.json()["model_id"] == d["model_id"]  # repo taken from the manifest there
    loose = run_cli("--json", "hash", *map(str, reversed(tiny120_parts)), "--repo", REPO_120B)
    assert loose.json()["files"] == d["files"] and loose.json()["model_id"] == d["model_id"]


# --- bad input -----------------------------------------------------------------------

def test_unknown_alias(home, hub):
    r = run_cli("download", "999b")
    assert r.code == 2 and r.err.startswith("error: unknown model '999b'") and "ossctl models" in r.err


def test_repo_not_found(home, hub):
    r = run_cli("download", "nobody/nothing")
    assert r.code == 3 and "not found" in r.err and "Traceback" not in r.err


def test_revision_not_found(home, hub):
    r = run_cli("download", "120b", "--revision", "v9")
    assert r.code == 3 and "revision 'v9' not found" in r.err


def test_include_matching_nothing_lists_what_exists(home, hub):
    r = run_cli("download", "120b", "--include", "*Q4_K_M*")
    assert r.code == 3 and "matches *Q4_K_M*" in r.err and names()[0] in r.err


def test_token_required_and_never_printed(home, hub, monkeypatch):
    hub.faults.token = "hf_secretTOKEN123456"
    r = run_cli("download", "120b")
    assert r.code == 5 and "HF_TOKEN" in r.err
    monkeypatch.setenv("HF_TOKEN", "hf_secretTOKEN123456")
    hub.reset_counters()
    r = run_cli("--json", "download", "120b")
    assert r.code == 0, r.err
    assert "hf_secretTOKEN123456" not in r.out + r.err
    auth = [h.get("authorization") for _, p, h in hub.requests if "/resolve/" in p or p.startswith("/api/")]
    assert auth and all(a == "Bearer hf_secretTOKEN123456" for a in auth)


def test_gated_repo(home, hub):
    hub.faults.gated.add(REPO_120B)
    r = run_cli("download", "120b")
    assert r.code == 5 and "gated" in r.err and "HF_TOKEN" in r.err


def test_server_errors_are_retried_then_reported(home, hub, tiny120_parts):
    hub.faults.status.append((r"^/cdn/", 500, 2))  # two 500s, then fine
    r = run_cli("download", "120b")
    assert r.code == 0, r.err
    hub.faults.status.append((r"^/api/models/", 500, -1))
    r = run_cli("download", "120b", env={"OSSCTL_DOWNLOAD_RETRIES": "1"})
    assert r.code == 5 and "HTTP 500" in r.err


def test_hub_unreachable(home, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    r = run_cli("download", "120b", env={"OSSCTL_DOWNLOAD_RETRIES": "0"})
    assert r.code == 5 and "cannot reach the hub" in r.err


def test_missing_part_on_hub(home, hub, tiny120_parts):
    hub.add_repo("acme/broken", [tiny120_parts[0], tiny120_parts[2]])
    r = run_cli("download", "acme/broken")
    assert r.code == 4 and f"missing {names()[1]}" in r.err


def test_hub_name_escaping_target_is_refused(home, hub, tiny120_parts, tmp_path):
    hub.add_repo("acme/evil", [tiny120_parts[0]], names=["../../evil.gguf"])
    r = run_cli("download", "acme/evil", "--dir", str(tmp_path / "t"))
    assert r.code == 2 and "escape" in r.err
    assert not (tmp_path / "evil.gguf").exists() and not list(tmp_path.rglob("evil.gguf"))


def test_target_not_writable(home, hub, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("download", "120b", "--dir", str(blocker / "sub"))
    assert r.code == 1 and "cannot create" in r.err


def test_disk_space_preflight_before_first_byte(home, hub, monkeypatch):
    monkeypatch.setenv("OSSCTL_DISK_MARGIN", str(1 << 62))
    r = run_cli("download", "120b")
    assert r.code == 1 and "not enough disk space" in r.err
    assert sum(hub.bytes_sent.values()) == 0


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_mid_write_keeps_partial_then_resumes(home, hub, tiny120_parts, small_fs):
    big = tiny120_parts[0]
    target = small_fs / "m"
    hub.faults.delay_per_chunk = 0.01
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", run_cli("download", "120b", "--dir", str(target),
                                                                        "--workers", "1")))
    t.start()
    part = target / (big.name + ".part")
    wait_for_partial(part, 256 << 10)
    filler = small_fs / "filler"
    try:
        with open(filler, "wb") as fh:  # take every free byte
            while True:
                fh.write(b"\0" * 65536)
    except OSError:
        pass
    t.join(60)
    r = result["r"]
    assert r.code == 1 and "disk full" in r.err and "partial download is kept" in r.err
    kept = part.stat().st_size
    assert kept > 0
    filler.unlink()
    hub.faults.delay_per_chunk = 0
    hub.reset_counters()
    r = run_cli("download", "120b", "--dir", str(target))
    assert r.code == 0, r.err
    assert hub.sent(big.name) == big.stat().st_size - kept
