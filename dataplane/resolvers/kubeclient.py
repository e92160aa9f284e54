"""A minimal asynchronous Kubernetes API client: credentials, list and watch.

The ``k8s`` resolver needs exactly two API calls, a paginated *list* and a
streaming *watch* of one resource type, so this module implements just those on
top of :mod:`aiohttp` instead of the thread-based official client.

Where the credentials come from (the order controller-runtime, and therefore
the upstream exporter, uses):

1. an explicit kubeconfig path passed by the caller;
2. the ``KUBECONFIG`` environment variable (first file of a ``:``-separated list);
3. in a pod: ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` with the
   service-account token and CA from ``/var/run/secrets/kubernetes.io/serviceaccount``;
4. ``~/.kube/config``.

Kubeconfig and in-cluster parsing is delegated to the ``kubernetes`` package's
config loaders (already a dependency): they handle embedded or file
certificates, ``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url``,
static tokens, ``tokenFile``, exec credential plugins (EKS, GKE) and OIDC, and
re-read rotating credentials (the projected service-account token is re-read
every minute). Re-implementing that would be a long tail of auth bugs. The
loaders are synchronous and a credential refresh may run an exec plugin, so
refreshes run in a worker thread to keep the event loop (the data path) free.

Errors surface as :class:`KubeAPIError` with a one-line message that names the
HTTP status, the verb and the resource, and the API server's own reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

JSON = dict[str, Any]


class KubeConfigError(Exception):
    """No usable credentials were found; the message says where we looked."""


class KubeAPIError(Exception):
    """A request to the API server failed. ``status`` is the HTTP code (0: no response)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def expired(self) -> bool:
        """True for 410 Gone / ``Expired``: the resourceVersion is too old, re-list."""
        return self.status == 410 or self.reason in ("Expired", "Gone")


class WatchInterrupted(KubeAPIError):
    """An open watch stream broke (connection lost, idle too long): resume from the last position."""


@dataclass
class _Credentials:
    """What the config loaders produced, refreshed through ``refresh``."""

    host: str
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None
    proxy: str | None
    source: str
    configuration: Any = field(repr=False)

    def authorization(self) -> str | None:
        """The Authorization header value; may run the loader's refresh hook (blocking)."""
        conf = self.configuration
        if conf.refresh_api_key_hook is not None:
            conf.refresh_api_key_hook(conf)
        token = conf.api_key.get("BearerToken") or conf.api_key.get("authorization")
        if token:
            return str(token)
        if conf.username or conf.password:
            return str(conf.get_basic_auth_token())
        return None


def _load_credentials(kubeconfig: str | None, serviceaccount_dir: str, environ: Mapping[str, str]) -> _Credentials:
    # Imported lazily: the kubernetes package is slow to import and only this resolver needs it.
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader
    from kubernetes.config.kube_config import load_kube_config

    conf = Configuration()
    env_kubeconfig = next((p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    sa = Path(serviceaccount_dir)
    if kubeconfig or env_kubeconfig:
        path = kubeconfig or env_kubeconfig
        assert path is not None
        try:
            load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=conf, persist_config=False
            )
        except Exception as exc:
            raise KubeConfigError(f"cannot load kubeconfig {path}: {exc}") from exc
        source = f"kubeconfig {path}"
    elif environ.get("KUBERNETES_SERVICE_HOST") and (sa / "token").is_file():
        try:
            loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=str(sa / "token"), cert_filename=str(sa / "ca.crt"), environ=environ
            )
            loader.load_and_set(conf)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise KubeConfigError(f"cannot use the pod's service account ({sa}): {exc}") from exc
        source = f"service account {sa}"
    else:
        path = os.path.expanduser("~/.kube/config")
        if not os.path.isfile(path):
            raise KubeConfigError(
                "no Kubernetes credentials: not in a pod (KUBERNETES_SERVICE_HOST unset or no "
                f"{sa}/token), KUBECONFIG unset and {path} missing"
            )
        try:
            load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=conf, persist_config=False
            )
        except Exception as exc:
            raise KubeConfigError(f"cannot load kubeconfig {path}: {exc}") from exc
        source = f"kubeconfig {path}"

    host = str(conf.host).rstrip("/")
    ctx: ssl.SSLContext | None = None
    if host.startswith("https://"):
        ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert or None)
        if conf.cert_file:
            ctx.load_cert_chain(conf.cert_file, conf.key_file or None)
        if not conf.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    return _Credentials(
        host=host,
        ssl_context=ctx,
        server_hostname=getattr(conf, "tls_server_name", None) or None,
        proxy=conf.proxy or None,
        source=source,
        configuration=conf,
    )


def _status_message(body: bytes) -> tuple[str, str]:
    """(message, reason) from a metav1.Status body, tolerating non-JSON bodies."""
    try:
        status = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:300], ""
    if not isinstance(status, dict):
        return str(status)[:300], ""
    return str(status.get("message") or status.get("reason") or ""), str(status.get("reason") or "")


class KubeClient:
    """List and watch one namespaced resource collection over HTTP/1.1 with aiohttp."""

    def __init__(self, credentials: _Credentials) -> None:
        self._creds = credentials
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(
        cls,
        kubeconfig: str | None = None,
        serviceaccount_dir: str = SERVICEACCOUNT_DIR,
        environ: Mapping[str, str] | None = None,
    ) -> KubeClient:
        """Find credentials as described in the module docstring. Raises :class:`KubeConfigError`."""
        return cls(_load_credentials(kubeconfig, serviceaccount_dir, os.environ if environ is None else environ))

    @property
    def host(self) -> str:
        return self._creds.host

    @property
    def source(self) -> str:
        """Where the credentials came from, for logs."""
        return self._creds.source

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "ringleader-k8s-resolver"}
        auth = await asyncio.to_thread(self._creds.authorization)
        if auth:
            headers["Authorization"] = auth
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._creds.ssl_context or False))
        return self._session

    def _url(self, path: str, params: Mapping[str, str]) -> str:
        return f"{self._creds.host}{path}?{urlencode(params)}"

    def _error(self, verb: str, what: str, status: int, body: bytes) -> KubeAPIError:
        message, reason = _status_message(body)
        kind = {401: "unauthorized", 403: "forbidden", 404: "not found", 410: "expired"}.get(status, "error")
        return KubeAPIError(f"{verb} {what}: HTTP {status} {kind}: {message}", status, reason)

    def _transport_error(self, verb: str, what: str, exc: BaseException) -> KubeAPIError:
        detail = str(exc) or type(exc).__name__
        return KubeAPIError(f"{verb} {what}: cannot reach the API server at {self._creds.host}: {detail}")

    async def list(
        self, path: str, params: Mapping[str, str], timeout: float | None, page_size: int = 500
    ) -> tuple[list[JSON], str]:
        """GET every page of a collection. Returns (items, the list's resourceVersion)."""
        items: list[JSON] = []
        query = dict(params, limit=str(page_size))
        session = self._get_session()
        what = path.rsplit("/", 1)[-1]
        while True:
            try:
                async with session.get(
                    self._url(path, query),
                    headers=await self._headers(),
                    proxy=self._creds.proxy,
                    server_hostname=self._creds.server_hostname,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise self._error("list", what, resp.status, body)
            except TimeoutError as exc:
                raise KubeAPIError(f"list {what}: no answer from {self._creds.host} within {timeout}s") from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise self._transport_error("list", what, exc) from exc
            page = json.loads(body)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            query["continue"] = meta["continue"]

    async def watch(
        self,
        path: str,
        params: Mapping[str, str],
        resource_version: str,
        connect_timeout: float | None,
        server_timeout: int,
    ) -> AsyncGenerator[JSON, None]:
        """Stream watch events (``{"type": ..., "object": ...}``) from ``resource_version``.

        A stream that breaks after it opened raises :class:`WatchInterrupted`.
        The first item is ``{"type": "OPEN"}``: the server accepted the watch (useful to
        declare a failed resolver healthy again before any change arrives). The server
        ends the stream after ``server_timeout`` seconds; the iterator then simply stops.
        An ``ERROR`` event is raised as :class:`KubeAPIError` (410 when the resourceVersion
        expired). Reads idle for longer than the server timeout plus a
        margin mean a dead connection and raise too.
        """
        query = dict(
            params,
            watch="1",
            allowWatchBookmarks="true",
            resourceVersion=resource_version,
            timeoutSeconds=str(server_timeout),
        )
        what = path.rsplit("/", 1)[-1]
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=server_timeout + 30
        )
        opened = False
        try:
            async with session.get(
                self._url(path, query),
                headers=await self._headers(),
                proxy=self._creds.proxy,
                server_hostname=self._creds.server_hostname,
                timeout=timeout,
            ) as resp:
                if resp.status != 200:
                    raise self._error("watch", what, resp.status, await resp.read())
                opened = True
                yield {"type": "OPEN"}
                # One JSON event per line; lines can be long (big slices), so no line limit.
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            obj = event.get("object") or {}
                            raise KubeAPIError(
                                f"watch {what}: {obj.get('message', 'error event')}",
                                int(obj.get("code") or 0),
                                str(obj.get("reason") or ""),
                            )
                        yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if opened:
                raise WatchInterrupted(
                    f"watch {what}: connection to {self._creds.host} lost ({type(exc).__name__})"
                ) from exc
            raise self._transport_error("watch", what, exc) from exc
