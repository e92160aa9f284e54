"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback for tests.

No kubelet, no scheduler and, by default, no controller manager: just the API,
which is all a client of EndpointSlices, ServiceAccounts and RBAC needs. With
``EnvTest(..., controller_manager=True)`` a kube-controller-manager runs too (see
"With controllers" below), which an operator's tests need. Typical use::

    from e2e.envtest import EnvTest, ensure_binaries

    with EnvTest(ensure_binaries()) as env:
        api = env.api_client()                                  # admin (system:masters)
        kubernetes.client.CoreV1Api(api).create_namespace(...)
        env.nobody_kubeconfig                                   # authenticated, no permissions
        sa = env.service_account("ns", "resolver")             # create SA + TokenRequest
        env.grant(sa, resources=["endpointslices"], api_group="discovery.k8s.io")
        sa.kubeconfig, sa.directory, sa.environ                 # "as the pod's service account"

In pytest, use the session fixture ``envtest`` from ``tests/conftest.py``.

What the server offers:

- ``https://127.0.0.1:<free port>`` with a serving certificate from a CA made
  for the run (``ca_file``); everything lives in a temporary directory that
  :meth:`EnvTest.stop` deletes, etcd's data dir included.
- Static-token authentication: ``admin_token`` (group ``system:masters``) and
  ``nobody_token`` (user ``nobody``, no bindings, so RBAC answers 403).
- Authorization mode RBAC, so Roles and RoleBindings behave as in a cluster.
- Service-account tokens: signing keys are made for the run, so the
  TokenRequest API issues real, verifiable JWTs.
- Without the controller manager (the default): namespaces get no ``default`` ServiceAccount and deleted
  namespaces stay ``Terminating``, so use a fresh namespace per test. The
  ``ServiceAccount`` admission plugin is off, so Pods can be created in such a
  namespace (nothing will run them). EndpointSlices are written by the tests
  themselves; the API refuses loopback addresses in them, so use e.g. 10.x
  addresses and never connect to them.

With controllers (``controller_manager=True``, binaries from
``ensure_binaries(with_controller_manager=True)``), kube-controller-manager runs
the controllers in :data:`CONTROLLERS`:

- Deployments make ReplicaSets and ReplicaSets make Pods (they stay ``Pending``:
  nothing schedules or runs them; a test may patch a Pod's ``status`` to make it
  count as ready), and rollouts, scaling and ``revisionHistoryLimit`` behave;
- the garbage collector deletes objects whose owners are gone (it rescans the
  API's discovery every 30 s, so a CRD created during the run is followed within
  about that), and namespaces really are deleted;
- every namespace gets its ``default`` ServiceAccount and its
  ``kube-root-ca.crt`` ConfigMap, so the ``ServiceAccount`` admission plugin is
  on, as in a real cluster: a Pod whose ServiceAccount does not exist is refused;
- PodDisruptionBudgets get a status.

:meth:`EnvTest.start` returns once the controllers act (the ``default``
namespace has its ServiceAccount). The EndpointSlice controller is left out:
tests still write the slices they need, and nothing rewrites them.

Processes are stopped with terminate, wait, kill; they also die with the test
process (``PR_SET_PDEATHSIG``) if it is killed before it can clean up, and the
next start deletes work directories such killed runs left behind.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

E2E_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = E2E_DIR / "build_k8s.sh"

_PR_SET_PDEATHSIG = 1
_WORKDIR_PREFIX = "ringleader-envtest-"

CONTROLLERS: tuple[str, ...] = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "disruption-controller",
)
"""What ``controller_manager=True`` runs (kube-controller-manager ``--controllers``)."""


class EnvTestError(RuntimeError):
    """The control plane could not be built or started; the message carries the log tail."""


def cache_dir() -> Path:
    """Where the binaries and Go caches live: ``$RINGLEADER_CACHE`` or ``~/.cache/ringleader``."""
    return Path(os.environ.get("RINGLEADER_CACHE") or Path.home() / ".cache" / "ringleader")


def _build_args(with_controller_manager: bool) -> list[str]:
    return [str(BUILD_SCRIPT)] + (["--with-controller-manager"] if with_controller_manager else [])


def binaries_ready(with_controller_manager: bool = False) -> bool:
    """True when ``build_k8s.sh`` has nothing to do (the binaries exist with the expected versions)."""
    check = [*_build_args(with_controller_manager), "--check"]
    return subprocess.run(check, capture_output=True).returncode == 0


def ensure_binaries(log_file: Path | None = None, with_controller_manager: bool = False) -> Path:
    """Build etcd and kube-apiserver (and kube-controller-manager if asked) if needed and return their
    directory. The first build takes minutes; later calls only check versions.

    The build's output goes to ``log_file`` (default ``<cache>/build_k8s.log``); on
    failure the exception carries its tail. Safe to call from concurrent processes.
    """
    log_path = log_file or cache_dir() / "build_k8s.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.run(
            [*_build_args(with_controller_manager), "--print-bin-dir"], stdout=subprocess.PIPE, stderr=log
        )
    if proc.returncode != 0:
        raise EnvTestError(
            f"{BUILD_SCRIPT.name} failed (exit {proc.returncode}); last lines of {log_path}:\n"
            + _tail(log_path)
        )
    return Path(proc.stdout.decode().strip().splitlines()[-1])


@dataclass(frozen=True)
class ServiceAccountCredentials:
    """What a pod running as ``namespace/name`` would have, materialised on disk.

    ``directory`` mirrors ``/var/run/secrets/kubernetes.io/serviceaccount``
    (``token``, ``ca.crt``, ``namespace``) and ``environ`` holds the
    ``KUBERNETES_SERVICE_HOST``/``_PORT`` a pod sees, so in-cluster config loaders
    work when pointed at both; ``kubeconfig`` is the same identity as a kubeconfig.
    """

    namespace: str
    name: str
    token: str
    directory: Path
    kubeconfig: Path
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


class _Process:
    """One child process with its log file, stopped by terminate, wait, kill."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches pytest, which then stops us in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def describe_failure(self) -> str:
        state = "running" if self.running() else f"exited with {self.popen.returncode}"
        return f"{self.name} ({state}); last lines of {self.log_path}:\n{_tail(self.log_path)}"


class EnvTest:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback; see the module docstring.

    ``controller_manager=True`` also runs kube-controller-manager with :data:`CONTROLLERS`
    (``bin_dir`` must then hold it: ``ensure_binaries(with_controller_manager=True)``).

    Attributes (valid after :meth:`start`): ``server`` (``https://127.0.0.1:PORT``),
    ``port``, ``etcd_url``, ``workdir``, ``ca_file``, ``admin_token``,
    ``nobody_token``, ``admin_kubeconfig``, ``nobody_kubeconfig``, ``version``
    (``gitVersion`` from ``/version``, e.g. ``v1.37.1``).
    """

    ADMIN_USER = "envtest-admin"
    NOBODY_USER = "nobody"
    CONTROLLER_MANAGER_USER = "envtest-controller-manager"

    def __init__(self, bin_dir: Path, startup_timeout: float = 120.0, *, controller_manager: bool = False) -> None:
        self.bin_dir = Path(bin_dir)
        self.startup_timeout = startup_timeout
        self.controller_manager = controller_manager
        self._controller_manager_token = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self._kcm: _Process | None = None
        self.workdir = Path()
        self.port = 0
        self.server = ""
        self.etcd_url = ""
        self.ca_file = Path()
        self.admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.nobody_token = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.admin_kubeconfig = Path()
        self.nobody_kubeconfig = Path()
        self.version = ""
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._sa_count = 0
        self._workdir_lock: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> EnvTest:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> EnvTest:
        """Start etcd, then kube-apiserver, and wait until ``/readyz`` says ok; then, if asked, the
        controller manager, waiting until its controllers act."""
        binaries = ["etcd", "kube-apiserver"] + (["kube-controller-manager"] if self.controller_manager else [])
        for binary in binaries:
            if not (self.bin_dir / binary).is_file():
                raise EnvTestError(f"{self.bin_dir / binary} is missing; run {BUILD_SCRIPT}")
        _remove_abandoned_workdirs()
        # Lock first, then give the directory its sweepable name, so no sweep sees it unlocked.
        staging = Path(tempfile.mkdtemp(prefix=f".{_WORKDIR_PREFIX}"))
        self._workdir_lock = _lock_workdir(staging, blocking=True)
        self.workdir = staging.with_name(staging.name[1:])
        staging.rename(self.workdir)
        atexit.register(self.stop)
        try:
            self._write_credentials()
            # Free ports are found by binding to port 0 and releasing it, so another process can take
            # one in between; a start that fails is retried on new ports.
            for attempt in range(3):
                try:
                    self._start_etcd()
                    self._start_apiserver()
                    break
                except EnvTestError:
                    self._stop_processes()
                    if attempt == 2 or not self._lost_port_race():
                        raise
            self.admin_kubeconfig = self.kubeconfig_for_token("admin", self.admin_token)
            self.nobody_kubeconfig = self.kubeconfig_for_token("nobody", self.nobody_token)
            self.version = str(self._get_json("/version")["gitVersion"])
            if self.controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop kube-controller-manager, kube-apiserver, then etcd; delete the work directory. Idempotent."""
        self._stop_processes()
        if self.workdir != Path() and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._workdir_lock is not None:
            os.close(self._workdir_lock)
            self._workdir_lock = None
        atexit.unregister(self.stop)

    def _stop_processes(self) -> None:
        for proc in (self._kcm, self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()
        self._kcm = self._apiserver = self._etcd = None

    def _lost_port_race(self) -> bool:
        logs = [self.workdir / "etcd.log", self.workdir / "kube-apiserver.log"]
        return any(p.exists() and b"address already in use" in p.read_bytes() for p in logs)

    # -- setup ----------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir()
        self.ca_file = pki / "ca.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=envtest-ca", "-keyout", str(pki / "ca.key"), "-out", str(self.ca_file))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
                 "-keyout", str(pki / "apiserver.key"), "-out", str(pki / "apiserver.csr"))
        (pki / "san.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,IP:10.0.0.1\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl("x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(self.ca_file),
                 "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(pki / "san.ext"), "-out", str(pki / "apiserver.crt"))
        # Service-account token signing (private) and verification (public) keys.
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        # token,user,uid,"group1,group2"
        (self.workdir / "tokens.csv").write_text(
            f'{self.admin_token},{self.ADMIN_USER},uid-admin,"system:masters"\n'
            f"{self.nobody_token},{self.NOBODY_USER},uid-nobody\n"
            f'{self._controller_manager_token},{self.CONTROLLER_MANAGER_USER},uid-kcm,"system:masters"\n'
        )

    def _start_etcd(self) -> None:
        client_port, peer_port = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        self._etcd = _Process("etcd", [
            str(self.bin_dir / "etcd"),
            "--name=envtest",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=envtest={peer_url}",
            # Test data is thrown away: skipping fsync keeps a shared 2-core machine responsive.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ], self.workdir / "etcd.log")
        self._wait_until("etcd /health", self._etcd, self._etcd_healthy)

    def _start_apiserver(self) -> None:
        pki = self.workdir / "pki"
        self.port = _free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self._apiserver = _Process("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # Without a controller manager no namespace gets a "default" ServiceAccount, and this plugin
            # would refuse every Pod for lack of it. With one, it stays on, as in a cluster.
            *([] if self.controller_manager else ["--disable-admission-plugins=ServiceAccount"]),
            # The "kubernetes" Service's endpoints would be 127.0.0.1, which the API itself rejects as an
            # endpoint address; nothing in the tests needs them.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ], self.workdir / "kube-apiserver.log")
        self._wait_until("kube-apiserver /readyz", self._apiserver, self._apiserver_ready)

    def _start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        kubeconfig = self.kubeconfig_for_token("controller-manager", self._controller_manager_token)
        self._kcm = _Process("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            # No serving port: several control planes (and a lab cluster) share this machine.
            "--secure-port=0",
            "--leader-elect=false",
            # One identity (system:masters) for every controller; per-controller accounts add nothing here.
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--profiling=false",
        ], self.workdir / "kube-controller-manager.log")
        self._wait_until("kube-controller-manager (the default ServiceAccount)", self._kcm, self._controllers_act)

    def _controllers_act(self) -> bool:
        try:
            self._get_json("/api/v1/namespaces/default/serviceaccounts/default")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        except (OSError, ValueError):
            return False
        return True

    def _wait_until(self, what: str, proc: _Process, probe: Any) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not proc.running():
                raise EnvTestError(f"{what}: process exited early. {proc.describe_failure()}")
            if probe():
                return
            time.sleep(0.2)
        raise EnvTestError(f"{what} not ready within {self.startup_timeout:.0f}s. {proc.describe_failure()}")

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        try:
            with self._open("/readyz") as resp:
                return bool(resp.status == 200 and resp.read().strip() == b"ok")
        except (OSError, ValueError):
            return False

    def _open(self, path: str) -> Any:
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return urllib.request.urlopen(request, timeout=5, context=context)

    def _get_json(self, path: str) -> dict[str, Any]:
        with self._open(path) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body

    # -- identities -----------------------------------------------------------------------------

    def kubeconfig_for_token(self, name: str, token: str) -> Path:
        """Write ``<workdir>/kubeconfig-<name>.yaml`` that authenticates with ``token``; return its path."""
        path = self.workdir / f"kubeconfig-{name}.yaml"
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": self.server, "certificate-authority-data": ca_data}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "envtest", "user": name}}],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def new_namespace(self, prefix: str = "test") -> str:
        """Create a namespace with a unique name starting with ``prefix`` (as admin) and return its name.

        Without the controller manager namespaces are never finalised, so each test should use its own.
        """
        from kubernetes import client

        with self.api_client() as api:
            created = client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(generate_name=f"{prefix}-"))
            )
        assert created.metadata is not None
        return str(created.metadata.name)

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``kubeconfig`` (default: admin). Close it when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.admin_kubeconfig))

    def service_account(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600
    ) -> ServiceAccountCredentials:
        """Create ServiceAccount ``namespace/name`` (and the namespace) if needed, request a token for
        it with the TokenRequest API and write it out as a pod would see it; see
        :class:`ServiceAccountCredentials`. Every call requests a fresh token in a fresh directory."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            if create:
                try:
                    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
                except ApiException as exc:
                    if exc.status != 409:  # AlreadyExists is fine: the call is idempotent
                        raise
                try:
                    core.create_namespaced_service_account(
                        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                    )
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            status = core.create_namespaced_service_account_token(name, namespace, request).status
            if status is None or not status.token:
                raise EnvTestError(f"TokenRequest for {namespace}/{name} returned no token")
            token = str(status.token)
        self._sa_count += 1
        directory = self.workdir / f"serviceaccount-{self._sa_count}-{namespace}-{name}"
        directory.mkdir()
        (directory / "token").write_text(token)
        (directory / "namespace").write_text(namespace)
        shutil.copyfile(self.ca_file, directory / "ca.crt")
        return ServiceAccountCredentials(
            namespace=namespace,
            name=name,
            token=token,
            directory=directory,
            kubeconfig=self.kubeconfig_for_token(f"sa-{self._sa_count}-{namespace}-{name}", token),
            environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port)},
        )

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """Shortcut: :meth:`service_account` and return only its kubeconfig."""
        return self.service_account(namespace, name).kubeconfig

    def grant(
        self,
        subject: ServiceAccountCredentials,
        *,
        resources: list[str],
        api_group: str = "",
        verbs: tuple[str, ...] = ("get", "list", "watch"),
        namespace: str | None = None,
    ) -> None:
        """Give ``subject`` ``verbs`` on ``resources`` in ``namespace`` (default: its own) with a Role and
        RoleBinding named after it. Idempotent per subject/namespace; the last call's rules win."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        ns = namespace or subject.namespace
        role_name = f"envtest-{subject.namespace}-{subject.name}"
        role = client.V1Role(
            metadata=client.V1ObjectMeta(name=role_name),
            rules=[client.V1PolicyRule(api_groups=[api_group], resources=resources, verbs=list(verbs))],
        )
        binding = client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=role_name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=role_name),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=subject.name, namespace=subject.namespace)
            ],
        )
        with self.api_client() as api:
            rbac = client.RbacAuthorizationV1Api(api)
            try:
                rbac.create_namespaced_role(ns, role)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                rbac.replace_namespaced_role(role_name, ns, role)
            try:
                rbac.create_namespaced_role_binding(ns, binding)
            except ApiException as exc:
                if exc.status != 409:
                    raise


def _lock_workdir(workdir: Path, *, blocking: bool) -> int | None:
    """Hold an flock on ``workdir/.owner`` for as long as the returned fd stays open (the owner's life).

    The kernel drops the lock when the owner dies, however it dies, which is how
    :func:`_remove_abandoned_workdirs` tells a live run's directory from a killed run's leftovers.
    """
    fd = os.open(workdir / ".owner", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_abandoned_workdirs() -> None:
    """Delete work directories left by runs killed before they could clean up (SIGKILL, SIGTERM).

    Their etcd and kube-apiserver are already gone (PR_SET_PDEATHSIG); only files remain.
    """
    for workdir in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        try:
            fd = _lock_workdir(workdir, blocking=False)
        except OSError:
            continue  # not ours to judge (vanished meanwhile, or no permission)
        if fd is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            os.close(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True)
    if proc.returncode != 0:
        raise EnvTestError(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to SIGKILL it when the test process dies.

    That covers the cases where no Python cleanup runs (SIGKILL, a pytest-timeout hard exit), so no
    etcd or kube-apiserver outlives the session.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


if __name__ == "__main__":
    # Manual use: start a control plane and keep it until Ctrl-C, printing how to reach it.
    with EnvTest(ensure_binaries()) as env, contextlib.suppress(KeyboardInterrupt):
        print(f"kube-apiserver {env.version} at {env.server}")
        print(f"export KUBECONFIG={env.admin_kubeconfig}")
        signal.pause()
