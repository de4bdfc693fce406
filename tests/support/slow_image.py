"""A deliberately slowed llama-server test image (issue 23's performance gate): the same
CPU build as the regular test image, started through an entrypoint wrapper that turns on
speculative decoding with a draft model baked into the image — a random 4-layer model
(same byte vocabulary as the tiny test model) that never predicts right, asked for 8
tokens per step with no probability floor. Every output token then costs 8 draft-model
passes: about 10x fewer output tokens/s and a higher p95 than the regular image on the same
model, a margin no busy 2-core machine blurs. ``--help`` / ``--version`` pass through the
wrapper unchanged (the same build answers)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

SLOW_TAG = "ossctl-test/llama-server:slow"
WRAPPER = """#!/bin/sh
# issue 23 test image: the same llama-server, slowed by a draft model that is always wrong
exec /app/llama-server "$@" --spec-type draft-simple -md /app/draft.gguf --spec-draft-n-max 8 --spec-draft-p-min 0
"""


def slow_image_into(client) -> str:
    """Import the slowed image into ``client``'s engine (skipped when present with the same
    binary, draft and wrapper). Returns its tag."""
    from tests.plugins.docker_engine import import_image, llama_server_binary, rootfs_tar
    from tests.support.ggufgen import write_model

    server = llama_server_binary()
    with tempfile.TemporaryDirectory(prefix="ossctl-slow-") as d:
        draft = write_model(Path(d), "draft", parts=1, n_embd=256, n_layer=4, n_head=4, n_ff=1024, seed=7)[0]
        wrapper = Path(d) / "slow.sh"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        stamp = hashlib.sha256(b"slow-1" + server.read_bytes() + draft.read_bytes() + WRAPPER.encode()).hexdigest()[:16]
        if not Path("/bin/busybox").exists():  # the regular image's fixture skips (or fails under CI) first
            raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
        tar = rootfs_tar({"app/llama-server": server, "app/draft.gguf": draft, "app/slow.sh": wrapper,
                          "bin/busybox": Path("/bin/busybox").resolve()},
                         dirs={"tmp": 0o1777, "app": 0o755, "bin": 0o755, "usr": 0o755, "usr/bin": 0o755},
                         links={"bin/sh": "/bin/busybox", "usr/bin/sha256sum": "/bin/busybox",
                                "usr/bin/rm": "/bin/busybox"})
        return import_image(client, tar, SLOW_TAG, ['ENTRYPOINT ["/app/slow.sh"]', "ENV PATH=/usr/bin:/bin"], stamp)


def copy_image(src_client, dst_client, tag: str) -> None:
    """``docker save | docker load`` of ``tag`` (same id on both engines), unless there."""
    img = src_client.images.get(tag)
    try:
        if dst_client.images.get(tag).id == img.id:
            return
    except Exception:  # noqa: BLE001 - not there yet
        pass
    dst_client.images.load(b"".join(img.save(named=True)))
