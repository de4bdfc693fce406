"""PURE: which build an image reference resolves to, and what a deploy says when that
changed since the serving release (issue 23: a tag that moves between two deploys changes
the build under an unchanged profile).

An image is named by its **repo digest** (``repo@sha256:…``, what a registry serves for
the tag) where the engine knows one, else by its **image id** (``sha256:…`` of its
config: an image built or imported locally has no repo digest). Both are content hashes:
the same digest is the same build.
"""

from __future__ import annotations

from typing import Any

from ossctl.errors import ConflictError


def _repo(image: str) -> str:
    """``ghcr.io/x/y:tag@sha256:…`` → ``ghcr.io/x/y`` (a registry port is not a tag)."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


def image_digest(image: str, image_id: str | None, repo_digests: list[str] | None) -> str | None:
    """The digest that names ``image``'s build: the ``sha256:…`` of its repo digest for the
    image's own repository (else the first repo digest), else its image id; None when
    neither is known (a record written before either was kept)."""
    digests = list(repo_digests or [])
    mine = [d for d in digests if d.split("@", 1)[0] == _repo(image)]
    for d in mine or digests:
        if "@" in d:
            return d.split("@", 1)[1]
    return image_id or None


def pull_ref(image: str, digest: str) -> str:
    """``repo@digest``: the reference that pulls exactly that build of ``image``'s repo."""
    return f"{_repo(image)}@{digest}"


def short(digest: str | None) -> str:
    """``sha256:0123456789ab…`` (12 hex digits), ``-`` when unknown."""
    if not digest:
        return "-"
    algo, _, hexd = digest.partition(":")
    return f"{algo}:{hexd[:12]}…" if hexd else digest[:19]


def image_change(profile: str, image: str, digest: str | None, serving: Any | None) -> str | None:
    """The line a deploy says before it starts when ``image`` (resolving to ``digest``)
    runs another build than the ``serving`` release (a :class:`Release` or None); None
    when the same build (or nothing to compare)."""
    if serving is None or not digest:
        return None
    was = image_digest(serving.image, serving.image_id, serving.image_digests)
    if not was or was == digest:
        return None
    if serving.image == image:
        return f"{profile}: image {image} is now {short(digest)} (was {short(was)})"
    return f"{profile}: image {image} ({short(digest)}) replaces {serving.image} ({short(was)})"


def refuse_unpinned(change: str, profile: str) -> ConflictError:
    """The error of a ``pin_image = true`` profile whose image changed (exit 6: what is
    there now differs from what was recorded, as an on-chain hash that differs)."""
    return ConflictError(f"{change}; the profile sets pin_image = true",
                         hint=f"check the new build, then `ossctl deploy --profile {profile} --allow-image-change` "
                              f"(or `ossctl upgrade --profile {profile} --image IMAGE`)")
