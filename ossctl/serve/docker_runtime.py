"""ONLY importer of the ``docker`` SDK. Reaches the engine the way the docker CLI does
(``DOCKER_HOST`` — ``unix://``, ``tcp://``, ``ssh://`` — with ``DOCKER_TLS_VERIFY`` /
``DOCKER_CERT_PATH``; default socket otherwise). The endpoint is a parameter of
:class:`DockerRuntime`, never a global, so several hosts can be driven by the same code.

Every SDK error is translated into an :class:`~ossctl.errors.OssctlError` with a hint.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import re
import signal
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ossctl import labels as L
from ossctl.errors import ConflictError, NotFoundError, OssctlError, RemoteError, UsageError
from ossctl.serve import engine_api

DEFAULT_HOST = "unix:///var/run/docker.sock"
_SCHEMES = ("unix", "npipe", "tcp", "http", "https", "ssh")
_HOST_HINT = ("use unix:///var/run/docker.sock, tcp://HOST:2376 (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH) "
              "or ssh://USER@HOST, as for the docker CLI")


def check_docker_host(url: str, env: dict[str, str] | None = None) -> str:
    """``url`` when it is a Docker endpoint the docker CLI would accept (unix://PATH,
    npipe://PATH, tcp://HOST[:PORT], ssh://[USER@]HOST[:PORT]) or the name of a Docker
    context in ``env``'s DOCKER_CONFIG (or ~/.docker); else :class:`UsageError`
    ("invalid DOCKER_HOST"), so a typo never reads as an unreachable engine."""
    if "://" not in url and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", url or ""):
        if context_endpoint(url, env if env is not None else dict(os.environ)) is not None:
            return url
        raise UsageError(f"invalid DOCKER_HOST {url!r}: not a URL, nor a `docker context` name",
                         hint=_HOST_HINT + "; `docker context ls` lists the context names")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric port
    except ValueError:
        parts = None
    bad = parts is None or parts.scheme not in _SCHEMES
    if not bad and parts.scheme in ("unix", "npipe"):
        bad = not parts.path or bool(parts.netloc and parts.scheme == "unix")
    elif not bad:
        bad = not parts.hostname or parts.path not in ("", "/") or bool(parts.query or parts.fragment)
        if parts.scheme != "ssh":
            bad = bad or bool(parts.username)
    if bad:
        raise UsageError(f"invalid DOCKER_HOST {url!r}", hint=_HOST_HINT)
    return url


SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


def docker_host(settings, flag: str | None = None) -> str:
    """The Docker endpoint: ``--docker-host`` > ``DOCKER_HOST`` > ``[serve] docker_host`` >
    the default socket. (DOCKER_HOST beats the config file, as for the docker CLI.)
    Raises :class:`UsageError` for an endpoint no Docker client could use."""
    host = flag or settings.env.get("DOCKER_HOST") or settings.value("serve.docker_host", default=DEFAULT_HOST)
    return check_docker_host(host, dict(settings.env))


def context_endpoint(name: str, env: dict[str, str]) -> tuple[str, dict[str, str]] | None:
    """The endpoint of Docker context ``name`` as the docker CLI stores it
    (``$DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json``, TLS files beside it under
    ``contexts/tls``): (URL, the DOCKER_TLS_VERIFY / DOCKER_CERT_PATH it implies), or None
    when there is no such context."""
    import hashlib
    import json
    from pathlib import Path

    if not name or "/" in name:
        return None
    root = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME") or Path.home()) / ".docker") / "contexts"
    digest = hashlib.sha256(name.encode()).hexdigest()
    try:
        meta = json.loads((root / "meta" / digest / "meta.json").read_text(encoding="utf-8"))
        ep = meta["Endpoints"]["docker"]
        url = ep["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    tls_dir = root / "tls" / digest / "docker"
    tls: dict[str, str] = {}
    if (tls_dir / "ca.pem").exists() or (tls_dir / "cert.pem").exists():
        tls = {"DOCKER_CERT_PATH": str(tls_dir), "DOCKER_TLS_VERIFY": "" if ep.get("SkipTLSVerify") else "1"}
    return url, tls


_TLS_REASONS = ("certificate verify failed", "unknown ca", "bad certificate", "certificate required",
                "certificate unknown", "wrong version number", "hostname mismatch", "ip address mismatch")


def _loaded(name: str):
    """Module ``name`` when something imported it already, else None: an error of the
    SDK (or of requests) can only come from a process that loaded it, and the read path
    (:mod:`ossctl.serve.engine_api`) must not load it just to look at its own errors."""
    import sys

    return sys.modules.get(name)


def _error_types() -> tuple[type[BaseException], ...]:
    """What :func:`_errors` translates: the engine_api reader's errors, OSError, and the
    SDK's and requests' when loaded."""
    types: list[type[BaseException]] = [engine_api.APIError, engine_api.TLSFilesError, ConnectionError, OSError]
    if (de := _loaded("docker.errors")) is not None:
        types.append(de.DockerException)
    if (rq := _loaded("requests.exceptions")) is not None:
        types.append(rq.RequestException)
    return tuple(types)


def _translate(exc: Exception, host: str, what: str = "") -> OssctlError:
    de = _loaded("docker.errors")
    rq = _loaded("requests.exceptions")
    ssl = _loaded("ssl")

    text = str(exc)
    low = text.lower()
    if isinstance(exc, engine_api.TLSFilesError) or de and isinstance(exc, de.TLSParameterError):
        return UsageError(f"TLS for {host} needs a client certificate: DOCKER_CERT_PATH has no cert.pem / key.pem",
                          hint="set DOCKER_CERT_PATH to a directory holding ca.pem, cert.pem and key.pem, as for `docker --tlsverify`")
    if "http request to an https server" in low:
        return RemoteError(f"the Docker daemon at {host} speaks TLS only",
                           hint="set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem), as for `docker --tlsverify`")
    if (rq and isinstance(exc, rq.SSLError) or ssl and isinstance(exc, ssl.SSLError)
            or "ssl" in low and any(r in low for r in _TLS_REASONS)):
        reason = next((r for r in _TLS_REASONS if r in low), "handshake failed")
        if reason == "certificate verify failed":
            reason = "its certificate is not signed by DOCKER_CERT_PATH/ca.pem (certificate verify failed)"
        elif reason in ("bad certificate", "unknown ca", "certificate required", "certificate unknown"):
            reason = f"it refused the client certificate ({reason})"
        return RemoteError(f"TLS with the Docker daemon at {host} failed: {reason}",
                           hint="check that DOCKER_CERT_PATH holds this engine's ca.pem and a cert.pem/key.pem it trusts "
                                "(`docker --tlsverify -H HOST version` must work)")
    if de and isinstance(exc, de.ImageNotFound):
        return NotFoundError(f"image not found on {host}: {what or text}", hint=f"docker pull {what}" if what else None)
    if de and isinstance(exc, de.NotFound) or isinstance(exc, engine_api.APIError) and exc.status_code == 404:
        return NotFoundError(f"not found on {host}: {what or text}")
    if "permission denied" in low:
        return RemoteError(f"permission denied talking to the Docker daemon at {host}",
                           hint="add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again) or run as root")
    if de and isinstance(exc, de.APIError) or isinstance(exc, engine_api.APIError):
        if exc.status_code == 409:
            return ConflictError(f"docker: {exc.explanation or text}")
        if "port is already allocated" in low or "address already in use" in low:
            return ConflictError(f"docker: {exc.explanation or text}", hint="another process holds the port; see `ossctl status`")
        return RemoteError(f"docker: {exc.explanation or text}")
    if isinstance(exc, (ConnectionError, OSError)) or de and isinstance(exc, de.DockerException) or "connection" in low:
        return RemoteError(f"cannot reach the Docker daemon at {host}",
                           hint="start it (`sudo systemctl start docker`), or point DOCKER_HOST at a running engine")
    return RemoteError(f"docker: {text}")


@contextlib.contextmanager
def _errors(host: str, what: str = "") -> Iterator[None]:
    try:
        yield
    except OssctlError:
        raise
    except _error_types() as exc:  # evaluated when raised: by then the SDK is loaded if it was used
        raise _translate(exc, host, what) from None


def engine_address(docker_host: str, env: dict[str, str]) -> str:
    """Where ports an engine publishes are reached from here: the host part of its endpoint
    (a ``docker context`` name is looked up), 127.0.0.1 for a local socket."""
    url = docker_host
    if "://" not in url:
        ctx = context_endpoint(url, env)
        url = ctx[0] if ctx else url
    if url.startswith(("unix://", "npipe://")):
        return "127.0.0.1"
    return urlsplit(url).hostname or "127.0.0.1"


def _ssh_options() -> list[str]:
    """Options for every ``ssh`` ossctl starts: batch mode (a prompt would hang), and one
    multiplexed connection per host, kept 60 s, so each Docker API call does not pay a
    full ssh login (the SDK opens one ssh per request; docker/docker-py#2966). The
    control sockets live in a 0700 directory of ours; without one, no multiplexing."""
    opts = ["-o", "BatchMode=yes"]
    d = Path(tempfile.gettempdir()) / f"ossctl-ssh-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700:
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={d}/%C", "-o", "ControlPersist=60"]
    except OSError:
        pass
    return opts


def _ssh_probe(url: str, timeout: int) -> None:
    """Check ``ssh://`` the way the docker CLI will use it (the ``ssh`` client, its config,
    agent and known_hosts) and turn a failure into one line: the SDK's own ssh process
    would print ssh's complaint on our stderr and then report a closed connection."""
    u = urlsplit(url)
    target = f"{u.username}@{u.hostname}" if u.username else u.hostname
    args = ["ssh", *_ssh_options(), "-o", f"ConnectTimeout={timeout}"]
    if u.username:
        args += ["-l", u.username]
    if u.port:
        args += ["-p", str(u.port)]
    args += ["--", u.hostname, "docker version --format '{{.Server.Version}}'"]
    try:
        res = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 5)
    except FileNotFoundError:
        raise RemoteError(f"cannot reach {url}: no `ssh` client on this machine",
                          hint="install it (`apt-get install openssh-client`)") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"cannot reach the Docker daemon at {url}: ssh did not answer in {timeout + 5} s",
                          hint=f"check that `ssh {target} docker version` works") from None
    last = next((ln.strip() for ln in reversed(res.stderr.splitlines()) if ln.strip()), "")
    last = last.removeprefix(f"{target}: ")
    if res.returncode == 255:
        raise RemoteError(f"ssh to {target} failed: {last or 'connection closed'}",
                          hint=f"check the key and host key (`ssh {target} docker version` must work without prompting)")
    if res.returncode == 127:
        raise RemoteError(f"no docker CLI on {target} (ssh:// runs `docker system dial-stdio` there)",
                          hint="install the docker CLI on that host")
    if res.returncode != 0:
        raise RemoteError(f"cannot reach the Docker daemon on {target} over ssh: {last or f'exit {res.returncode}'}",
                          hint=f"start it there, and check `ssh {target} docker version`")


def _ssh_dial_argv(user: str | None, host: str, port: str | int | None) -> list[str]:
    """``ssh ... HOST docker system dial-stdio``: the Engine API on ssh's stdin/stdout, as
    the docker CLI reaches an ssh:// engine (the SDK client and the read path alike)."""
    args = ["ssh", *_ssh_options(), "-o", "ConnectTimeout=30"]
    if user:
        args += ["-l", user]
    if port:
        args += ["-p", str(port)]
    return args + ["--", host, "docker system dial-stdio"]


def _ssh_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SSL_CERT_FILE")}


def _ssh_socket_fixes() -> None:
    """Changes to the SDK's ssh-client socket (docker 7.x ``SSHSocket``): it starts ``ssh``
    with :func:`_ssh_options` and a connect timeout, its complaints not printed (a failed
    connection is explained by :func:`_ssh_probe`); closing it after ssh has exited (usual
    after an exec stream) is not an error: the SDK's BrokenPipeError there loses the exec's
    output (docker/docker-py#3218). Then :func:`_ssh_keepalive_fixes`."""
    from docker.transport import sshconn

    sock = sshconn.SSHSocket
    if getattr(sock, "_ossctl", False) or not all(hasattr(sock, a) for a in ("connect", "close", "makefile", "recv")):
        return
    original_close = sock.close

    def connect(self, **_kwargs) -> None:
        args = _ssh_dial_argv(self.user, self.host, self.port)
        self.proc = subprocess.Popen(args, env=_ssh_env(), stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    def close(self) -> None:
        try:
            original_close(self)
        except BrokenPipeError:
            self.proc.terminate()

    sock.connect, sock.close, sock._ossctl = connect, close, True
    _ssh_keepalive_fixes(sshconn)


def _ssh_keepalive_fixes(sshconn) -> None:
    """Keep and reuse ssh connections (urllib3 2 only). The SDK made a new pool for every
    request, let each response close ssh's stdout and asked whether a kept connection was
    alive on a socket it never connected, so every API call paid a new ssh session and a
    new ``docker system dial-stdio`` on the host (~0.15 s each; docker/docker-py#2966).
    Alive now means: ssh still runs, the connection never carried a raw (hijacked
    exec/attach) stream, and nothing is left unread on ssh's stdout."""
    import select

    import urllib3

    if int(urllib3.__version__.split(".")[0]) < 2 or not hasattr(sshconn, "SSHConnection"):
        return
    sock = sshconn.SSHSocket
    original_recv = sock.recv

    def makefile(self, mode):
        if not self.proc:
            self.connect()
        self.proc.stdout.channel = self
        return _KeepOpen(self.proc.stdout)

    def recv(self, n):
        self._ossctl_raw = True  # only the SDK's hijacked streams read the socket directly
        return original_recv(self, n)

    def is_connected(self) -> bool:
        s = self.sock
        if s is None or getattr(s, "proc", None) is None or s.proc.poll() is not None or getattr(s, "_ossctl_raw", False):
            return False
        try:
            return not select.select([s.proc.stdout], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def get_connection(self, url, proxies=None):
        if getattr(self, "ssh_client", None) is not None:  # the SDK's paramiko path keeps its pools
            return original_get_connection(self, url, proxies)
        with self.pools.lock:
            pool = self.pools.get("ossctl")
            if pool is None:
                pool = self.pools["ossctl"] = sshconn.SSHConnectionPool(
                    ssh_client=None, timeout=self.timeout, maxsize=self.max_pool_size, host=self.ssh_host)
        return pool

    adapter = sshconn.SSHHTTPAdapter
    original_get_connection = adapter.get_connection
    sock.makefile, sock.recv = makefile, recv
    sshconn.SSHConnection.is_connected = property(is_connected)
    adapter.get_connection = get_connection


class _KeepOpen:
    """ssh's stdout as one HTTP response sees it: closing the response leaves the pipe open
    for the next request on the same connection."""

    def __init__(self, f):
        self.__dict__["_f"] = f

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __setattr__(self, name, value):
        setattr(self._f, name, value)

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


def _import_docker(ssh: bool):
    """The docker SDK. It imports paramiko (~0.1 s, a third of a `status`) only to offer
    ssh://, so for other endpoints paramiko is kept out; a later ssh:// engine in the same
    process (a fleet) brings the SDK's ssh transport back."""
    import sys

    if not ssh and "docker" not in sys.modules and "paramiko" not in sys.modules:
        sys.modules["paramiko"] = None  # type: ignore[assignment] - makes `import paramiko` fail fast
        try:
            import docker
        finally:
            del sys.modules["paramiko"]
        return docker
    import docker

    if ssh and not hasattr(docker.transport, "SSHHTTPAdapter"):
        import docker.api.client
        from docker.transport import sshconn

        docker.transport.SSHHTTPAdapter = sshconn.SSHHTTPAdapter
        docker.api.client.SSHHTTPAdapter = sshconn.SSHHTTPAdapter
    return docker


class _SDKReader:
    """engine_api's ``get`` / ``get_json`` through the SDK client, for the endpoints only
    the SDK speaks (npipe://, http(s)://): the read methods are written once."""

    def __init__(self, rt: DockerRuntime):
        self._rt = rt

    def get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        api = self._rt.client.api
        res = api._get(api.base_url + path, params=params)
        if res.status_code >= 400:
            try:
                msg = res.json().get("message") or res.text
            except ValueError:
                msg = res.text
            raise engine_api.APIError(res.status_code, str(msg).strip()[:300])
        return res.content

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return json.loads(self.get(path, params) or b"null")

    def close(self) -> None:
        pass


class DockerRuntime:
    """A connection to one Docker engine. ``base_url`` is checked first
    (:func:`check_docker_host`); ``ssh://`` goes through the ``ssh`` client like the docker
    CLI (so ~/.ssh/config, the agent and known_hosts apply); ``tcp://`` uses TLS when
    ``env`` has DOCKER_TLS_VERIFY / DOCKER_CERT_PATH. Raises :class:`UsageError` (bad
    endpoint or TLS settings) or :class:`RemoteError` (unreachable, key or certificate
    refused), each one line."""

    def __init__(self, base_url: str, env: dict[str, str] | None = None, timeout: int = 60):
        check_docker_host(base_url, env if env is not None else None)
        self.host = base_url
        environment = {k: v for k, v in (env or {}).items() if k in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
        ctx = context_endpoint(base_url, env or {}) if "://" not in base_url else None
        if ctx is not None:  # a `docker context` name: its endpoint and TLS files
            base_url, tls = ctx
            environment.update(tls)
        environment["DOCKER_HOST"] = base_url
        self.host_url = base_url  # the endpoint itself (``host`` may be a context name)
        self._exec_dirs: dict[str, str] = {}
        self._environment, self._timeout = environment, timeout
        self._client = None
        ssh = base_url.startswith("ssh://")
        try:
            with _errors(base_url):
                u = urlsplit(base_url)
                # reads go through engine_api (no SDK import: most of a read-only command's
                # time); the SDK client is made on the first write, see `client`
                self._api = engine_api.open_api(base_url, environment, timeout,
                                                ssh_argv=_ssh_dial_argv(u.username, u.hostname, u.port) if ssh else None,
                                                ssh_env=_ssh_env() if ssh else None)
                if self._api is None:  # an endpoint only the SDK speaks (npipe://, http(s)://)
                    self._api = _SDKReader(self)
                    self._api_version = None
                    self._api_version = self.client.api._version
                else:
                    # the one request a connection costs: it also proves the engine answers
                    self._api_version = self._api.get_json("/version")["ApiVersion"]
        except OssctlError:
            self.close()
            if ssh:  # ssh's own account of what failed (key, host key, no docker there), in one line
                _ssh_probe(base_url, min(timeout, 30))
            raise
        except (KeyError, TypeError):
            self.close()
            raise RemoteError(f"{base_url} did not answer as a Docker engine (no API version in /version)") from None

    @property
    def client(self):
        """The docker SDK client (made, and the SDK imported, on first use: only what
        writes needs it)."""
        if self._client is None:
            ssh = self.host_url.startswith("ssh://")
            docker = _import_docker(ssh)
            if ssh:
                _ssh_socket_fixes()
            with _errors(self.host_url):
                kwargs = docker.utils.kwargs_from_env(environment=self._environment)
                # a placeholder version, so the SDK does not ask the engine before we set TLS up
                client = docker.DockerClient(**kwargs, version="1.24", timeout=self._timeout, use_ssh_client=ssh)
                if "tls" in kwargs:
                    # requests would swap DOCKER_CERT_PATH's CA for $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE
                    # (set on many machines) and then reject the engine's certificate
                    client.api.trust_env = False
                # the version the read path was told; asked here when there is no read path
                client.api._version = getattr(self, "_api_version", None) or client.api._retrieve_server_version()
            self._client = client
        return self._client

    def _sdk(self):
        """The docker SDK module, imported the way :attr:`client` does (without paramiko
        for an endpoint that is not ssh://): ``import docker.x`` before the client exists
        would import it whole."""
        self.client  # noqa: B018 - makes the client, importing the SDK
        import docker

        return docker

    def close(self) -> None:
        for c in (getattr(self, "_api", None), self._client):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()

    def __enter__(self) -> DockerRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_local(self) -> bool:
        return self.host.startswith("unix://") or self.host.startswith("npipe://")

    # images -------------------------------------------------------------------------
    def image_info(self, image: str) -> dict[str, Any]:
        """``{"id": "sha256:...", "digests": [...]}``; :class:`NotFoundError` with the pull
        command when the image is not present locally (ossctl never pulls by itself)."""
        try:
            with _errors(self.host, image):
                img = self._api.get_json(f"/images/{engine_api.seg(image)}/json")
        except NotFoundError:
            raise NotFoundError(f"image {image} is not present on the Docker host {self.host}",
                                hint=f"docker pull {image}") from None
        return {"id": img["Id"], "digests": list(img.get("RepoDigests") or [])}

    # containers ---------------------------------------------------------------------
    def run(self, spec: dict[str, Any]) -> str:
        """Create and start a container from an :mod:`ossctl.serve.llama_server` (or
        :mod:`ossctl.fleet.frontdoor.caddy`) spec; returns its id. Optional spec keys: mounts,
        ports, device_requests, ``network_mode`` ("host": the container shares the engine
        host's network) and ``files`` ({absolute path: bytes}, written into the container
        before it starts). It starts with restart policy "no" so that a crash during the
        health gate shows its real exit code and log once; :meth:`set_restart` applies the
        spec's policy once the gate passed."""
        DeviceRequest, Mount = self._sdk().types.DeviceRequest, self._sdk().types.Mount

        mounts = [Mount(m["target"], m["source"], type=m["type"], read_only=m.get("read_only", False))
                  for m in spec.get("mounts", [])]
        devices = [DeviceRequest(driver=d["driver"], count=d["count"], device_ids=d["device_ids"] or None,
                                 capabilities=d["capabilities"]) for d in spec.get("device_requests", [])]
        ports = {k: tuple(v) for k, v in spec.get("ports", {}).items()}
        extra = {"network_mode": spec["network_mode"]} if spec.get("network_mode") else {}
        with _errors(self.host, spec["image"]):
            c = self.client.containers.create(
                spec["image"], command=spec["command"], name=spec["name"], labels=spec["labels"],
                environment=spec.get("environment", {}), mounts=mounts, ports=ports or None,
                device_requests=devices or None, restart_policy={"Name": "no"}, detach=True, **extra)
        try:
            with _errors(self.host, spec["image"]):
                if spec.get("files"):
                    c.put_archive("/", _tar(spec["files"]))
                c.start()
        except OssctlError:
            self.remove(c.id)
            raise
        return c.id

    def inspect(self, name_or_id: str) -> dict[str, Any] | None:
        """The engine's inspect document of the container (read path, no SDK), or None when
        it does not exist. For what :meth:`find` leaves out (its bridge address)."""
        try:
            with _errors(self.host):
                return self._api.get_json(f"/containers/{engine_api.seg(name_or_id)}/json")
        except NotFoundError:
            return None

    def find(self, name_or_id: str) -> dict[str, Any] | None:
        """The container's state (see :meth:`_describe`), or None when it does not exist."""
        attrs = self.inspect(name_or_id)
        return None if attrs is None else _describe(attrs)

    def list(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Containers (running or not) carrying all of ``labels``, from the engine's summary
        list (one request, however many there are): ``id``, ``name``, ``status``
        (created / running / exited / ...), ``running``, ``labels``, ``image``. Use
        :meth:`find` for the details of one."""
        flt = [f"{k}={v}" for k, v in labels.items()]
        with _errors(self.host):
            rows = self._api.get_json("/containers/json", {"all": 1, "filters": json.dumps({"label": flt})})
        return [{"id": r["Id"], "name": (r.get("Names") or ["/"])[0].lstrip("/"), "status": r.get("State", ""),
                 "running": r.get("State") == "running", "labels": dict(r.get("Labels") or {}),
                 "image": r.get("Image", "")} for r in rows]

    def set_restart(self, cid: str, policy: dict[str, Any]) -> None:
        with _errors(self.host, cid):
            self.client.containers.get(cid).update(restart_policy=policy)

    def start(self, cid: str) -> None:
        with _errors(self.host, cid):
            self.client.containers.get(cid).start()

    def stop(self, cid: str, timeout: int = 10) -> None:
        with _errors(self.host, cid):
            self.client.containers.get(cid).stop(timeout=timeout)

    def remove(self, cid: str) -> None:
        """Force-remove; a container already gone is fine."""
        try:
            with _errors(self.host, cid):
                self.client.containers.get(cid).remove(force=True)
        except NotFoundError:
            pass

    def exec(self, cid: str, argv: list[str], env: dict[str, str] | None = None,
             timeout: float = 120.0) -> tuple[int, bytes, bytes]:
        """Run ``argv`` inside the running container ``cid``: (exit code, stdout, stderr).
        ``env`` reaches only that process (for a secret: not in argv). Raises
        :class:`ConflictError` when the container is not running.

        Over ssh:// an attached exec needs a connection of its own: a new ssh session and
        a ``docker system dial-stdio`` on the host (0.25-0.7 s). There, in a container with
        ``sh``, the output goes to files read back through the archive API instead: a few
        ordinary requests on the kept connection. Elsewhere (and without ``sh``): attached."""
        if self.host_url.startswith("ssh://"):
            res = self._exec_via_files(cid, argv, env, timeout)
            if res is not None:
                return res
        try:
            with _errors(self.host, cid):
                res = self.client.containers.get(cid).exec_run(argv, environment=env or None, demux=True)
        except ValueError as exc:
            # docker-py now and then misreads the multiplexed answer ("N is not a valid
            # stream", docker/docker-py#3160): the command ran, its output is lost
            raise RemoteError(f"the answer of {argv[0]} in {cid} on {self.host} could not be read: {exc}",
                              hint="run the command again") from None
        out, err = res.output if isinstance(res.output, tuple) else (res.output, b"")
        return int(res.exit_code if res.exit_code is not None else -1), out or b"", err or b""

    def _exec_via_files(self, cid: str, argv: list[str], env: dict[str, str] | None,
                        timeout: float) -> tuple[int, bytes, bytes] | None:
        """:meth:`exec` with the output in ``/tmp/.ossctl-exec-*`` of the container (the
        previous exec's files are removed by the next one); None when ``sh`` could not run."""
        import time
        import uuid

        api = self.client.api
        d = f"/tmp/.ossctl-exec-{uuid.uuid4().hex[:16]}"
        script = 'd=$0; [ -z "$1" ] || rm -rf "$1"; shift; mkdir -p "$d" || exit 125; exec "$@" >"$d/out" 2>"$d/err"'
        with _errors(self.host, cid):
            eid = api.exec_create(cid, ["sh", "-c", script, d, self._exec_dirs.pop(cid, ""), *argv],
                                  environment=env or None)["Id"]
            api.exec_start(eid, detach=True)
            t0, pause = time.monotonic(), 0.002
            while (st := api.exec_inspect(eid)).get("Running"):
                if time.monotonic() - t0 > timeout:
                    raise RemoteError(f"{argv[0]} in {cid} did not finish within {timeout:g} s on {self.host}")
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        files = self.read_tree(cid, d)
        if "out" not in files:
            return None
        self._exec_dirs[cid] = d
        code = st.get("ExitCode")
        return int(code if code is not None else -1), files.get("out", b""), files.get("err", b"")

    def logs(self, cid: str, tail: int = 20) -> str:
        try:
            with _errors(self.host, cid):
                raw = self.client.containers.get(cid).logs(tail=tail)
        except OssctlError:
            return ""
        return raw.decode("utf-8", "replace")

    # engine-side records ---------------------------------------------------------------
    def ensure_empty_image(self, tag: str, labels: dict[str, str]) -> None:
        """Import an empty image as ``tag`` unless present (0 bytes, no registry needed):
        the base of containers that are created to hold a name or files, never started."""
        import io
        import tarfile

        try:
            with _errors(self.host, tag):
                self._api.get_json(f"/images/{engine_api.seg(tag)}/json")
            return
        except NotFoundError:
            pass
        buf = io.BytesIO()
        tarfile.open(fileobj=buf, mode="w").close()
        repo, _, ver = tag.partition(":")
        with _errors(self.host, tag):
            self.client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=ver or "latest",
                                                   changes=[f"LABEL {k}={v}" for k, v in labels.items()])

    def create_marker(self, name: str, image: str, labels: dict[str, str],
                      volume: tuple[str, str] | None = None) -> str | None:
        """Create (never start) container ``name``; returns its id, or None when a
        container of that name exists already (the engine makes this atomic: the basis of
        the lock). ``volume`` = (named volume, mount point)."""
        de = self._sdk().errors

        vols = {volume[0]: {"bind": volume[1], "mode": "rw"}} if volume else None
        try:
            if volume:
                self.client.volumes.create(volume[0], labels=labels)
            c = self.client.containers.create(image, command=["-"], name=name, labels=labels,
                                              network_disabled=True, volumes=vols)
        except de.APIError as exc:
            if exc.status_code == 409:
                return None
            raise _translate(exc, self.host, name) from None
        except (de.DockerException, OSError) as exc:
            raise _translate(exc, self.host, name) from None
        return c.id

    def has_volume(self, name: str) -> bool:
        """Whether the named volume exists on the engine."""
        try:
            with _errors(self.host, name):
                self._api.get_json(f"/volumes/{engine_api.seg(name)}")
        except NotFoundError:
            return False
        return True

    def read_tree(self, cid: str, path: str) -> dict[str, bytes]:
        """Every regular file under ``path`` in container ``cid`` (started or not), keyed by
        its path relative to ``path``; {} when ``path`` does not exist."""
        import io
        import tarfile

        try:
            with _errors(self.host, cid):
                data = self._api.get(f"/containers/{engine_api.seg(cid)}/archive", {"path": path})
        except NotFoundError:
            return {}
        out: dict[str, bytes] = {}
        top = path.rstrip("/").rsplit("/", 1)[-1] + "/"
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.startswith(top):
                    out[m.name[len(top):]] = tar.extractfile(m).read()
        return out

    def stat_files(self, directory: str, names: list[str], image: str) -> dict[str, dict[str, Any] | None]:
        """Size (bytes) and mtime (RFC 3339 text, ns) of ``directory/NAME`` on the engine's
        host, per name (None: missing), without starting anything: a container of ``image``
        (an empty one does) is created with the directory mounted read-only, each file is
        looked at through the archive API, and the container is removed."""
        import base64

        Mount = self._sdk().types.Mount

        with _errors(self.host, image):
            hc = self.client.api.create_host_config(mounts=[Mount("/models", directory, type="bind", read_only=True)],
                                                    network_mode="none")
            cid = self.client.api.create_container(image, command=["none"], host_config=hc,
                                                   labels={L.PROBE: "1"})["Id"]
        try:
            out: dict[str, dict[str, Any] | None] = {}
            for name in names:
                with _errors(self.host, directory):
                    res = self.client.api.head(self.client.api._url("/containers/{0}/archive", cid),
                                               params={"path": f"/models/{name}"})
                raw = res.headers.get("X-Docker-Container-Path-Stat") if res.status_code == 200 else None
                st = json.loads(base64.b64decode(raw)) if raw else None
                out[name] = {"size": int(st["size"]), "mtime": str(st["mtime"])} \
                    if st and not int(st.get("mode", 0)) & 0x80000000 else None  # a directory is not the file
            return out
        finally:
            with contextlib.suppress(Exception):
                self.client.api.remove_container(cid, force=True)

    def write_tree(self, cid: str, path: str, files: dict[str, bytes]) -> None:
        """Write ``files`` (relative path → bytes) under ``path`` in container ``cid``, in
        one request."""
        import io
        import tarfile
        import time

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files.items():
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), int(time.time()), 0o600
                tar.addfile(ti, io.BytesIO(data))
        with _errors(self.host, cid):
            ok = self.client.api.put_archive(cid, path, buf.getvalue())
        if not ok:
            raise RemoteError(f"the Docker engine at {self.host} refused to store the release record")

    # engine -------------------------------------------------------------------------
    def engine_info(self) -> dict[str, Any]:
        """``{"version", "runtimes": [...], "cdi_spec_dirs": [...]}`` of the engine (for
        doctor: NVIDIA support is the ``nvidia`` runtime or a CDI spec)."""
        # on a new connection: a dockerd shutting down closes its listener but goes on
        # answering the connections it has, so the kept one would say "it answers" while
        # every new client (the SDK's writes, the next command) is refused
        self._api.close()
        with _errors(self.host):
            ver = self._api.get_json("/version")
            info = self._api.get_json("/info")
        return {"version": ver.get("Version", "?"), "api_version": ver.get("ApiVersion"),
                "runtimes": sorted((info.get("Runtimes") or {}).keys()),
                "id": info.get("ID"), "name": info.get("Name"), "root_dir": info.get("DockerRootDir"),  # who answered
                "cdi_spec_dirs": list(info.get("CDISpecDirs") or [])}

    def run_once(self, image: str, args: list[str], timeout: float = 60, entrypoint: list[str] | None = None,
                 read_only: dict[str, str] | None = None, volumes: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``image`` with ``args`` (its entrypoint kept unless ``entrypoint`` is given),
        no network, ``read_only`` host directories bind-mounted (host path → container
        path), named ``volumes`` mounted writable (name → container path; then as root, whose
        files they hold), and return (exit code, stdout + stderr). The container is always
        removed."""
        Mount = self._sdk().types.Mount

        mounts = [Mount(t, src, type="bind", read_only=True) for src, t in (read_only or {}).items()]
        mounts += [Mount(t, name, type="volume") for name, t in (volumes or {}).items()]
        with _errors(self.host, image):
            c = self.client.containers.create(image, command=args, network_disabled=True, entrypoint=entrypoint,
                                              mounts=mounts or None, labels={L.PROBE: "1"},
                                              **({"user": "0"} if volumes else {}))
        try:
            with _errors(self.host, image):
                c.start()
                res = c.wait(timeout=timeout)
                out = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            return int(res.get("StatusCode", -1)), out
        finally:
            with contextlib.suppress(Exception):
                c.remove(force=True)

    def host_port_users(self, port: int) -> list[str]:
        """Names of running containers publishing host ``port`` (one request)."""
        with _errors(self.host):
            rows = self._api.get_json("/containers/json")
        return [(r.get("Names") or ["/"])[0].lstrip("/") for r in rows
                if any(str(p.get("PublicPort")) == str(port) for p in r.get("Ports") or [])]


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    dirs = sorted({"/".join(parts[:i]) for p in files for parts in [p.strip("/").split("/")]
                   for i in range(1, len(parts))})
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        for path, data in files.items():
            ti = tarfile.TarInfo(path.lstrip("/"))
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _describe(attrs: dict[str, Any]) -> dict[str, Any]:
    """The record of a container from its inspect JSON (``GET /containers/ID/json``,
    the SDK's ``Container.attrs``)."""
    st = attrs.get("State") or {}
    started = st.get("StartedAt") or ""
    return {
        "id": attrs["Id"],
        "name": (attrs.get("Name") or "").lstrip("/"),
        "status": st.get("Status", ""),  # created / running / restarting / exited / dead
        "running": bool(st.get("Running")) and not st.get("Restarting"),
        "restarting": bool(st.get("Restarting")),
        "restart_count": int(attrs.get("RestartCount") or 0),
        "exit_code": st.get("ExitCode"),
        "oom_killed": bool(st.get("OOMKilled")),
        "error": st.get("Error") or "",
        "started_at": started,
        "started_ts": _parse_ts(started),
        "labels": dict((attrs.get("Config") or {}).get("Labels") or {}),
        "image": (attrs.get("Config") or {}).get("Image", ""),
        "image_id": attrs.get("Image", ""),
    }


def _parse_ts(s: str) -> float | None:
    if not s or s.startswith("0001-"):
        return None
    try:
        # docker gives nanoseconds: trim to microseconds for fromisoformat
        base, _, frac = s.rstrip("Z").partition(".")
        frac = (frac + "000000")[:6]
        return _dt.datetime.fromisoformat(f"{base}.{frac}+00:00").timestamp()
    except ValueError:
        return None
