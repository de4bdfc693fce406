"""Where a client (``ossctl bench``) reaches a deployment: its base URL, the API key to
send and the release that answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ossctl.errors import NotFoundError, UsageError
from ossctl.redact import register_secret
from ossctl.serve.apikey import read_api_key
from ossctl.serve.engine import open_engine


@dataclass(frozen=True)
class Endpoint:
    url: str  # base URL, e.g. http://127.0.0.1:8080
    api_key: str | None = field(default=None, repr=False)
    release: str | None = None  # release id; None for a URL given by hand


def client_endpoint(settings, profile: str | None, url: str | None, api_key_file: str | None) -> Endpoint:
    """``url`` as given, else the running release of ``profile`` (of any profile when
    None). The key: ``OSSCTL_API_KEY`` unless ``api_key_file`` is given, else that file,
    else the release's own key file; it is registered for redaction. Raises
    :class:`UsageError` (both ``profile`` and ``url``, an unreadable key file) and
    :class:`NotFoundError` (nothing deployed)."""
    if url and profile:
        raise UsageError("give --profile or --url, not both")
    env: Mapping[str, str] = settings.env
    key_file = api_key_file
    rid = None
    if url:
        base = url
    else:
        release = open_engine(settings).current_release(profile)
        if release is None:
            what = f"profile {profile}" if profile else "any profile"
            raise NotFoundError(f"nothing deployed for {what}",
                                hint=f"deploy first (`ossctl deploy --profile {profile or 'PROFILE'}`), or pass --url URL")
        base = release["endpoint"]
        rid = release.get("id")
        if key_file is None and not env.get("OSSCTL_API_KEY"):
            key_file = release.get("api_key_file") or None
    key = None
    if api_key_file is None and env.get("OSSCTL_API_KEY"):
        key = env["OSSCTL_API_KEY"].strip()
    elif key_file:
        key = read_api_key(key_file, "API key file")
    register_secret(key)
    return Endpoint(base, key, rid)
