"""The lab: a real one-node Kubernetes cluster with real containers, on this machine only.

``python -m e2e.lab up`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
kubelet and kube-proxy (all built from Go modules by ``e2e/build_k8s.sh --with-node`` and
``e2e/build_containerd.sh``), imports the images of ``e2e/build_images.sh`` and waits until the node is
Ready; ``down`` stops exactly what ``up`` started and removes everything it made; ``status`` says what
is running.  ``KUBECONFIG=/run/ringleader-lab/admin.kubeconfig kubectl get pods -A`` then works.

In Python::

    from e2e.lab import Lab
    with Lab.up() as lab:                       # or the session fixture ``lab`` in tests/conftest.py
        lab.kubectl("apply", "-f", "deploy/")
        lab.api_client()                        # kubernetes.client.ApiClient as cluster admin

Everything stays on this machine:

- a bridge ``rl-lab0`` carries the node IP 10.244.0.1/24; pods get 10.244.0.0/24 (CNI bridge plugin,
  host-local IPAM, ``ipMasq: false``) and routes to the pod subnet and the Service CIDR 10.96.0.0/16 only,
  no default route; a guard rule drops anything from the pod range that would leave through the outward
  interface.  The API server, kubelet and kube-proxy listen on the bridge address or loopback.
- the pods' cgroups are nested under the cgroup of the process that ran ``up`` (KubeletConfiguration
  ``cgroupRoot``), and the lab's own daemons and the container shims live next to them, so what the lab
  runs is accounted to whoever started it.

Nothing is left behind: ``down`` kills the PIDs the lab started (recorded with their start times, so a
reused PID is never hit) and every process in the lab's cgroups, unmounts what is mounted under the state
directory (netns, rootfs, volumes), deletes the veths and the bridge, removes every ``KUBE-*`` chain from
iptables and ip6tables and the guard rule, restores ``net.ipv4.ip_forward``, removes the cgroups and the
state directory.  A run that was killed leaves its record in ``/run/ringleader-lab/lab.json``; the next
``up`` (or ``down``) cleans it first.  The bridge name and ports are fixed, so one lab runs per machine,
guarded by a lock file.  Logs of the last lab stay in ``$RINGLEADER_CACHE/lab/logs`` for post-mortems.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("RINGLEADER_LAB_STATE", "/run/ringleader-lab"))
LOCK_FILE = Path("/run/ringleader-lab.lock")
BRIDGE = "rl-lab0"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
POD_RANGE = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_NAME = "lab-node"
CNI_NETWORK = "ringleader-lab"
API_PORT = 6443
ETCD_PORT = 23790
ETCD_PEER_PORT = 23800
GUARD_COMMENT = "ringleader-lab guard"
CNI_BIN = Path("/usr/lib/cni")
CGROUP_V1 = Path("/sys/fs/cgroup")
TMPFS_SIZE = os.environ.get("RINGLEADER_LAB_TMPFS_SIZE", "8g")
IMAGES = ("pause", "otelcol", "telemetrygen", "ringleader", "loadgen")


class LabError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("RINGLEADER_CACHE", str(Path.home() / ".cache" / "ringleader")))


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def _run(*argv: str, check: bool = True, quiet: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# --------------------------------------------------------------------------------------- builds ----


@dataclass(frozen=True)
class Binaries:
    k8s: Path
    containerd: Path
    images: Path
    ringleader_archive: Path
    ringleader_image: str


def ensure_builds(log_file: Path | None = None) -> Binaries:
    """Build (or find, when the cache is warm) everything the lab runs; raise naming what is missing."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, iptables, cgroups, mounts)")
    e2e = REPO / "e2e"
    steps = [
        ["bash", str(e2e / "lab_deps.sh")],
        ["bash", str(e2e / "build_k8s.sh"), "--with-node", "--print-bin-dir"],
        ["bash", str(e2e / "build_containerd.sh"), "--print-bin-dir"],
        ["bash", str(e2e / "build_otelcol.sh"), "--print-bin-dir"],
    ]
    # Ringleader's own image: the Dockerfile built by e2e/build_image.sh when the tree has it (tag
    # ringleader:<version>, the operator's default), else the interim image of build_images.sh.
    delivery = (e2e / "build_image.sh").exists()
    if delivery:
        steps.append(["bash", str(e2e / "build_images.sh"), "--print-dir", "pause", "otelcol", "telemetrygen",
                      "loadgen"])
        steps.append(["bash", str(e2e / "build_image.sh")])
    else:
        steps.append(["bash", str(e2e / "build_images.sh"), "--print-dir"])
    out: list[Path] = []
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    for argv in steps:
        started = time.monotonic()
        with open(log_file or os.devnull, "a") as err:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err if log_file else None, text=True)
        if proc.returncode != 0:
            where = f"; see {log_file}" if log_file else ""
            raise LabError(f"{Path(argv[1]).name} failed with exit code {proc.returncode}{where}")
        lines = proc.stdout.strip().splitlines()
        out.append(Path(lines[-1]) if lines else Path())
        if time.monotonic() - started > 5:
            log(f"{Path(argv[1]).name}: {time.monotonic() - started:.0f}s")
    if delivery:
        # build_image.sh tags the image ringleader:<project version> (the archive's name also carries a
        # source hash, which is not part of the tag).
        version = _project_version()
        return Binaries(k8s=out[1], containerd=out[2], images=out[4], ringleader_archive=out[5],
                        ringleader_image=f"ringleader:{version}")
    return Binaries(k8s=out[1], containerd=out[2], images=out[4], ringleader_archive=out[4] / "ringleader.tar",
                    ringleader_image="localhost/ringleader:lab")


def _project_version() -> str:
    """``project.version`` of pyproject.toml: the tag build_image.sh gives Ringleader's image."""
    import tomllib

    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


# ---------------------------------------------------------------------------------- processes ----


def _start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks (None when it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child (the lab was started by this process): reap it
        return None
    return int(fields[19])


def _alive(pid: int, start: int | None) -> bool:
    return start is not None and _start_time(pid) == start


def _kill(pid: int, start: int | None, sig: int) -> None:
    if _alive(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# ------------------------------------------------------------------------------------ cgroups ----


def _cgroup_hierarchies() -> dict[str, Path]:
    """Mounted cgroup hierarchies (name -> mount point), v1 and the cgroup2 ``unified`` mount."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("cgroup", "cgroup2"):
            found[Path(parts[1]).name] = Path(parts[1])
    return found


def starter_cgroup() -> str:
    """The deepest cgroup v1 path of this process: pods are nested under it."""
    best = "/"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers and path.count("/") > best.count("/") and path != "/":
            best = path
    return best


def _make_cgroup(path: str) -> None:
    """Create ``path`` in every v1 hierarchy; cpuset levels get their parent's cpus and mems."""
    for name, mount in _cgroup_hierarchies().items():
        cur = mount
        for part in path.strip("/").split("/"):
            parent, cur = cur, cur / part
            if not cur.exists():
                cur.mkdir()
                if "cpuset" in name.split(","):
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        (cur / f).write_text((parent / f).read_text())


def _cgroup_pids(path: str) -> set[int]:
    pids: set[int] = set()
    for mount in _cgroup_hierarchies().values():
        # os.walk, not rglob: cgroups vanish while we look (the kubelet or runc removing them).
        for dirpath, _, _ in os.walk(mount / path.strip("/")):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def _move_to_cgroup(pid: int, path: str) -> None:
    for mount in _cgroup_hierarchies().values():
        with contextlib.suppress(OSError):
            (mount / path.strip("/") / "cgroup.procs").write_text(str(pid))


def _remove_cgroup(path: str) -> None:
    for mount in _cgroup_hierarchies().values():
        for dirpath, _, _ in os.walk(mount / path.strip("/"), topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


# -------------------------------------------------------------------------------------- network ----


def outward_interface() -> str | None:
    out = _run("ip", "-o", "route", "show", "default", check=False).stdout.split()
    return out[out.index("dev") + 1] if "dev" in out else None


def _iptables_cleanup(binary: str) -> None:
    """Remove every KUBE-* chain (and jumps to them) and the lab's guard rule from all tables."""
    for table in ("filter", "nat", "mangle", "raw"):
        save = _run(f"{binary}-save", "-t", table, check=False).stdout
        chains = [ln[1:].split()[0] for ln in save.splitlines() if ln.startswith(":KUBE-")]
        for ln in save.splitlines():
            if not ln.startswith("-A "):
                continue
            parts = ln.split()
            chain = parts[1]
            if chain.startswith("KUBE-"):
                continue
            if any(p.startswith("KUBE-") for p in parts[2:]) or GUARD_COMMENT in ln:
                # iptables-save quotes comments; re-split with the shell's rules.
                import shlex

                _run(binary, "-t", table, "-D", chain, *shlex.split(ln)[2:], check=False)
        for chain in chains:
            _run(binary, "-t", table, "-F", chain, check=False)
        for chain in chains:
            _run(binary, "-t", table, "-X", chain, check=False)


# ---------------------------------------------------------------------------------- the lab ----


@dataclass
class _Proc:
    name: str
    pid: int
    start: int | None


class Lab:
    """A running lab; :meth:`up` makes one, :meth:`down` ends it (also as a context manager)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.kubeconfig = STATE / "admin.kubeconfig"
        self.bin = Path(state["k8s_bin"])

    # ----------------------------------------------------------------------------- public API --

    @classmethod
    def up(cls, timeout: float = 180.0, images: tuple[str, ...] = IMAGES, owned: bool = True) -> Lab:
        """Build what is missing, clean what a dead lab left, start a lab and wait until its node is Ready.

        ``owned``: the lab belongs to this process: if the process dies without ``down`` (a killed test
        run), the next ``up`` treats the lab as stale and removes it.  ``lab up`` on the command line
        starts an unowned lab that stays until ``lab down``.
        """
        bins = ensure_builds(log_file=cache_dir() / "lab" / "build.log")
        with _locked():
            cleanup_stale()
            lab = cls._start(bins, timeout, images, owned)
            return lab

    @classmethod
    def current(cls) -> Lab | None:
        """The lab running now (started by ``lab up`` in another process), if any."""
        state = _read_state()
        return cls(state) if state is not None and _running(state) else None

    def down(self) -> None:
        with _locked():
            _teardown(self.state)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bin / "kubectl"), *args], capture_output=True, text=True, env=self.env,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def api_client(self) -> Any:
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def ringleader_image(self) -> str:
        """The reference of Ringleader's image as imported (``ringleader:<version>`` from the Dockerfile)."""
        return str(self.state.get("ringleader_image", "localhost/ringleader:lab"))

    @property
    def data_dir(self) -> Path:
        """A host directory pods may mount (hostPath) to hand files to the tests; emptied by ``down``."""
        return STATE / "data"

    def import_images(self, archives: list[Path]) -> None:
        _import_images(Path(self.state["containerd_bin"]), archives)

    def refresh_images(self, images: tuple[str, ...] = IMAGES) -> list[Path]:
        """Rebuild what changed (e.g. Ringleader's image after a source edit) and import the archives that
        differ from what this lab imported; returns those archives."""
        bins = ensure_builds(log_file=cache_dir() / "lab" / "build.log")
        imported: dict[str, list[int]] = self.state.get("imported", {})
        stale = [a for a in _archives(bins, images) if imported.get(str(a)) != _stamp(a)]
        if stale:
            log(f"importing changed images: {', '.join(a.name for a in stale)}")
            self.import_images(stale)
            with _locked():
                for a in stale:
                    imported[str(a)] = _stamp(a)
                self.state["imported"] = imported
                self.state["ringleader_image"] = bins.ringleader_image
                _write_state(self.state)
        return stale

    # ------------------------------------------------------------------------------- start up --

    @classmethod
    def _start(cls, bins: Binaries, timeout: float, images: tuple[str, ...], owned: bool) -> Lab:
        started = time.monotonic()
        logs = cache_dir() / "lab" / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        STATE.mkdir(parents=True)
        # Everything of the lab's runtime (etcd, containerd's content and snapshots, kubelet's pods) lives
        # in one tmpfs: imports are faster, and tear-down is an unmount instead of deleting ~1 GB of files.
        _run("mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "ringleader-lab", str(STATE))
        cgroot = f"{starter_cgroup().rstrip('/')}/ringleader-lab"
        state: dict[str, Any] = {
            "procs": [], "cgroup": cgroot, "k8s_bin": str(bins.k8s), "containerd_bin": str(bins.containerd),
            "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(), "outward": outward_interface(),
            "logs": str(logs), "ready": False, "ringleader_image": bins.ringleader_image,
            "owner": {"pid": os.getpid(), "start": _start_time(os.getpid())} if owned else None,
            "made_dirs": [d for d in ("/run/containerd", "/var/lib/cni") if not Path(d).exists()],
        }
        _write_state(state)
        lab = cls(state)
        try:
            lab._setup_host(cgroot)
            _write_pki_and_configs(state)
            lab._spawn("etcd", [str(bins.k8s / "etcd"), "--data-dir", str(STATE / "etcd"), "--name", "lab",
                                "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
                                "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
                                "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT}",
                                "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT}",
                                "--initial-cluster", f"lab=http://127.0.0.1:{ETCD_PEER_PORT}",
                                "--unsafe-no-fsync", "--log-level", "warn"])
            lab._spawn("containerd", [str(bins.containerd / "containerd"), "--config", str(STATE / "containerd.toml")],
                       env={"PATH": f"{bins.containerd}:/usr/sbin:/usr/bin:/sbin:/bin"})
            lab._spawn("kube-apiserver", _apiserver_argv(bins.k8s))
            deadline = time.monotonic() + timeout
            lab._wait("containerd socket", lambda: (STATE / "containerd.sock").exists(), deadline)
            # `ctr images import` takes one archive; the imports run side by side with the control plane.
            importers = []
            for name in images:
                with open(logs / f"ctr-import-{name}.log", "w") as import_log:
                    importers.append(subprocess.Popen(
                        [str(bins.containerd / "ctr"), "--address", str(STATE / "containerd.sock"), "-n", "k8s.io",
                         "images", "import", str(bins.ringleader_archive if name == "ringleader"
                                                 else bins.images / f"{name}.tar")],
                        stdout=import_log, stderr=subprocess.STDOUT))
            lab._wait("kube-apiserver", lab._apiserver_ready, deadline)
            lab._spawn("kube-controller-manager", [
                str(bins.k8s / "kube-controller-manager"), "--kubeconfig", str(STATE / "kcm.kubeconfig"),
                "--bind-address", "127.0.0.1", "--secure-port", "10257", "--leader-elect=false",
                "--service-account-private-key-file", str(STATE / "pki" / "sa.key"),
                "--root-ca-file", str(STATE / "pki" / "ca.crt"), "--use-service-account-credentials=true",
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--controllers", "*,-nodeipam,-bootstrapsigner,-tokencleaner",
                "--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10", "--v", "1"])
            lab._spawn("kube-scheduler", [
                str(bins.k8s / "kube-scheduler"), "--kubeconfig", str(STATE / "scheduler.kubeconfig"),
                "--bind-address", "127.0.0.1", "--secure-port", "10259", "--leader-elect=false", "--v", "1"])
            lab._spawn("kube-proxy", [str(bins.k8s / "kube-proxy"), "--config", str(STATE / "kube-proxy.yaml"),
                                      "--v", "1"])
            for name, importer in zip(images, importers, strict=True):
                if importer.wait(timeout=max(1.0, deadline - time.monotonic())) != 0:
                    raise LabError(f"ctr images import failed; see {logs / f'ctr-import-{name}.log'}")
            state["imported"] = {str(a): _stamp(a) for a in _archives(bins, images)}
            lab._spawn("kubelet", [str(bins.k8s / "kubelet"), "--config", str(STATE / "kubelet.yaml"),
                                   "--kubeconfig", str(STATE / "kubelet.kubeconfig"), "--root-dir",
                                   str(STATE / "kubelet"), "--hostname-override", NODE_NAME, "--node-ip", NODE_IP,
                                   "--v", "1"])
            lab._wait("node Ready", lab._node_ready, deadline)
            lab._wait("default ServiceAccount", lambda: lab.kubectl(
                "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0, deadline)
            state["ready"] = True
            _write_state(state)
            log(f"up in {time.monotonic() - started:.1f}s; KUBECONFIG={lab.kubeconfig}")
            return lab
        except BaseException:
            log(f"start-up failed; logs in {logs}; tearing down")
            with contextlib.suppress(Exception):
                _teardown(state)
            raise

    def _setup_host(self, cgroot: str) -> None:
        _make_cgroup(f"{cgroot}/daemons")
        _make_cgroup(cgroot)
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        self.state["bridge"] = True
        _write_state(self.state)
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        out = self.state["outward"]
        if out:
            _run("iptables", "-I", "FORWARD", "1", "-s", POD_RANGE, "-o", out, "-m", "comment", "--comment",
                 GUARD_COMMENT, "-j", "DROP")
        (STATE / "data").mkdir(mode=0o1777)
        os.chmod(STATE / "data", 0o1777)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        logs = Path(self.state["logs"])
        with open(logs / f"{name}.log", "w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env or {"PATH": os.environ.get("PATH", "")},
                                    cwd=STATE)
        _move_to_cgroup(proc.pid, f"{self.state['cgroup']}/daemons")
        self.state["procs"].append({"name": name, "pid": proc.pid, "start": _start_time(proc.pid)})
        _write_state(self.state)

    def _wait(self, what: str, probe: Callable[[], bool], deadline: float) -> None:
        while True:
            for p in self.state["procs"]:
                if not _alive(p["pid"], p["start"]):
                    tail = _tail(Path(self.state["logs"]) / f"{p['name']}.log")
                    raise LabError(f"{p['name']} exited while waiting for {what}:\n{tail}")
            with contextlib.suppress(Exception):
                if probe():
                    return
            if time.monotonic() > deadline:
                raise LabError(f"timed out waiting for {what}; logs in {self.state['logs']}")
            time.sleep(0.1)

    def _apiserver_ready(self) -> bool:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(STATE / "pki" / "ca.crt"))
        req = urllib.request.Request(f"https://{NODE_IP}:{API_PORT}/readyz",
                                     headers={"Authorization": f"Bearer {self.state['tokens']['admin']}"})
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", NODE_NAME, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False, timeout=10)
        return out.stdout.strip() == "True"


def _apiserver_argv(k8s: Path) -> list[str]:
    pki = STATE / "pki"
    return [
        str(k8s / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{ETCD_PORT}",
        "--bind-address", NODE_IP, "--advertise-address", NODE_IP, "--secure-port", str(API_PORT),
        "--service-cluster-ip-range", SERVICE_CIDR, "--tls-cert-file", str(pki / "apiserver.crt"),
        "--tls-private-key-file", str(pki / "apiserver.key"), "--client-ca-file", str(pki / "ca.crt"),
        "--token-auth-file", str(STATE / "tokens.csv"), "--authorization-mode", "Node,RBAC",
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(pki / "sa.pub"), "--service-account-signing-key-file", str(pki / "sa.key"),
        "--kubelet-client-certificate", str(pki / "kubelet-client.crt"),
        "--kubelet-client-key", str(pki / "kubelet-client.key"),
        "--kubelet-preferred-address-types", "InternalIP", "--allow-privileged=true", "--profiling=false",
        "--enable-priority-and-fairness=false", "--v", "1",
    ]


# ------------------------------------------------------------------------------ configuration ----


def _openssl(*args: str) -> None:
    _run("openssl", *args)


def _write_pki_and_configs(state: dict[str, Any]) -> None:
    pki = STATE / "pki"
    pki.mkdir(mode=0o700)
    ca_crt, ca_key = pki / "ca.crt", pki / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-subj", "/CN=ringleader-lab-ca",
             "-keyout", str(ca_key), "-out", str(ca_crt))

    def leaf(name: str, subj: str, ext: str) -> None:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", str(pki / f"{name}.key"),
                 "-out", str(pki / f"{name}.csr"))
        (pki / f"{name}.ext").write_text(ext)
        _openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", "7", "-extfile", str(pki / f"{name}.ext"),
                 "-out", str(pki / f"{name}.crt"))

    sans = ",".join(["IP:" + NODE_IP, "IP:10.96.0.1", "IP:127.0.0.1", "DNS:kubernetes", "DNS:kubernetes.default",
                     "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local", "DNS:localhost"])
    leaf("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    leaf("kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "extendedKeyUsage=clientAuth\n")
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))

    users = {
        "admin": ("admin", "system:masters"),
        "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", ""),
        "scheduler": ("system:kube-scheduler", ""),
        "kcm": ("system:kube-controller-manager", ""),
    }
    tokens = {key: secrets.token_hex(16) for key in users}
    state["tokens"] = tokens
    _write_state(state)
    lines = [f'{tokens[k]},{user},{user},"{groups}"' if groups else f"{tokens[k]},{user},{user}"
             for k, (user, groups) in users.items()]
    (STATE / "tokens.csv").write_text("\n".join(lines) + "\n")
    os.chmod(STATE / "tokens.csv", 0o600)
    ca_b64 = base64.b64encode(ca_crt.read_bytes()).decode()
    for key in users:
        name = key if key != "admin" else "admin"
        (STATE / f"{name}.kubeconfig").write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": {"server": f"https://{NODE_IP}:{API_PORT}",
                                                     "certificate-authority-data": ca_b64}}],
            "users": [{"name": key, "user": {"token": tokens[key]}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": key, "namespace": "default"}}],
        }, indent=1))
        os.chmod(STATE / f"{name}.kubeconfig", 0o600)

    cni = STATE / "cni"
    cni.mkdir()
    (cni / "10-ringleader-lab.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": CNI_NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "isDefaultGateway": False, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(STATE / "cni-ipam"),
                      "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                      "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}]}},
            {"type": "loopback"},
        ],
    }, indent=1))
    (STATE / "containerd.toml").write_text(f"""\
version = 3
root = "{STATE}/containerd/root"
state = "{STATE}/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs"]

[grpc]
  address = "{STATE}/containerd.sock"
[ttrpc]
  address = "{STATE}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "localhost/pause:lab"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN}"]
  conf_dir = "{cni}"
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "/usr/sbin/runc"
  Root = "{STATE}/runc"
""")
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca_crt)}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs", "cgroupRoot": state["cgroup"], "cgroupsPerQOS": True,
        "failCgroupV1": False, "failSwapOn": False, "resolvConf": "",
        "containerRuntimeEndpoint": f"unix://{STATE}/containerd.sock",
        "podLogsDir": str(STATE / "pod-logs"),
        "clusterDomain": "cluster.local", "podCIDR": POD_CIDR, "maxPods": 110,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "makeIPTablesUtilChains": True,
        "nodeStatusUpdateFrequency": "4s", "syncFrequency": "10s", "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }
    (STATE / "kubelet.yaml").write_text(json.dumps(kubelet, indent=1))
    proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
        "mode": "iptables", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP, "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
        "iptables": {"masqueradeAll": False, "localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
    }
    (STATE / "kube-proxy.yaml").write_text(json.dumps(proxy, indent=1))


def _archives(bins: Binaries, images: tuple[str, ...]) -> list[Path]:
    return [bins.ringleader_archive if name == "ringleader" else bins.images / f"{name}.tar" for name in images]


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _import_images(containerd_bin: Path, archives: list[Path]) -> None:
    for archive in archives:
        _run(str(containerd_bin / "ctr"), "--address", str(STATE / "containerd.sock"), "-n", "k8s.io", "images",
             "import", str(archive))


# ------------------------------------------------------------------------------- state & lock ----


def _read_state() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((STATE / "lab.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def _write_state(state: dict[str, Any]) -> None:
    tmp = STATE / "lab.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATE / "lab.json")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another lab command holds {LOCK_FILE}; waiting")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def cleanup_stale() -> None:
    """Tear down what an earlier lab left (killed run, failed start, failed down); refuse if it still runs.

    A lab is still running when it finished starting, all its processes live, and its owner (if it has
    one) lives; anything else is stale.
    """
    state = _read_state()
    if state is None:
        if STATE.exists() or _bridge_exists():
            log("cleaning up a lab that left no record")
            _teardown({"procs": [], "cgroup": None, "bridge": True})
        return
    if _running(state):
        raise LabError("a lab is already up; use it, or run `python -m e2e.lab down` first")
    log("cleaning up an earlier lab that was killed or failed")
    _teardown(state)


def _running(state: dict[str, Any]) -> bool:
    owner = state.get("owner")
    return bool(
        state.get("ready")
        and all(_alive(p["pid"], p["start"]) for p in state.get("procs", []))
        and (owner is None or _alive(owner["pid"], owner["start"]))
    )



def _bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


# ---------------------------------------------------------------------------------- tear down ----


def _teardown(state: dict[str, Any]) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    procs = [_Proc(p["name"], p["pid"], p["start"]) for p in state.get("procs", [])]
    # Nothing of a lab is worth a graceful stop (its state is deleted next): SIGKILL the kubelet first, so it
    # restarts no container, then every process in the lab's cgroups (containers, shims, the daemons: all
    # started by the lab), then the recorded PIDs (a daemon may have left the cgroup).
    for p in procs:
        if p.name == "kubelet":
            _kill(p.pid, p.start, signal.SIGKILL)
    cg = state.get("cgroup")
    deadline = time.monotonic() + 10
    while True:
        pids = (_cgroup_pids(cg) if cg else set()) - {os.getpid()}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in procs:
            _kill(p.pid, p.start, signal.SIGKILL)
        if (not pids and not any(_alive(p.pid, p.start) for p in procs)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    timings["processes"] = time.monotonic() - started
    _unmount_under(STATE)
    # Network: veths on the bridge, the bridge, KUBE-* chains, the guard rule, ip_forward.
    if Path(f"/sys/class/net/{BRIDGE}/brif").is_dir():
        for veth in os.listdir(f"/sys/class/net/{BRIDGE}/brif"):
            _run("ip", "link", "delete", veth, check=False)
    if _bridge_exists():
        _run("ip", "link", "delete", BRIDGE, check=False)
    timings["mounts+links"] = time.monotonic() - started
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            _iptables_cleanup(binary)
    timings["iptables"] = time.monotonic() - started
    if shutil.which("conntrack"):
        for cidr in (POD_RANGE, SERVICE_CIDR):
            _run("conntrack", "-D", "-s", cidr, check=False)
            _run("conntrack", "-D", "-d", cidr, check=False)
    timings["conntrack"] = time.monotonic() - started
    if "ip_forward" in state:
        Path("/proc/sys/net/ipv4/ip_forward").write_text(state["ip_forward"])
    for f in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*") if Path("/var/lib/cni/results").is_dir() else []:
        f.unlink(missing_ok=True)
    # Directories the lab's containerd and CNI plugins make outside the state dir (shim sockets under
    # /run/containerd/s are named by containerd, not configurable): removed when the lab made them.
    for made in state.get("made_dirs", []):
        shutil.rmtree(made, ignore_errors=True)
    for sock in _shim_sockets():
        sock.unlink(missing_ok=True)
    if cg:
        _remove_cgroup(cg)
    timings["cgroups"] = time.monotonic() - started
    shutil.rmtree(STATE, ignore_errors=True)
    if STATE.exists():
        _unmount_under(STATE)
        shutil.rmtree(STATE, ignore_errors=True)
    phases = ", ".join(f"{k} by {v:.1f}s" for k, v in timings.items())
    log(f"down in {time.monotonic() - started:.1f}s ({phases})")


def _shim_sockets() -> list[Path]:
    """The shim sockets of the lab's containers: containerd names them sha256(address/namespace/id)."""
    import hashlib

    runc_root = STATE / "runc" / "k8s.io"
    ids = os.listdir(runc_root) if runc_root.is_dir() else []
    found = []
    for address in (STATE / "containerd.sock", STATE / "containerd.sock.ttrpc"):
        for cid in ids:
            for suffix in ("", "/debug"):
                digest = hashlib.sha256(f"{address}/k8s.io/{cid}{suffix}".encode()).hexdigest()
                sock = Path("/run/containerd/s") / digest
                if sock.exists():
                    found.append(sock)
    return found


def _unmount_under(root: Path) -> None:
    prefix = str(root).rstrip("/") + "/"
    for _ in range(3):
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(root):
                points.append(point)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)


def leftovers() -> list[str]:
    """What of a lab is still on this machine (empty after a clean ``down``)."""
    found: list[str] = []
    if STATE.exists():
        found.append(f"state dir {STATE}")
    if _bridge_exists():
        found.append(f"bridge {BRIDGE}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(STATE) in line.split()[4]:
            found.append(f"mount {line.split()[4]}")
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            save = _run(f"{binary}-save", check=False).stdout
            found += [f"{binary} {ln}" for ln in save.splitlines() if "KUBE-" in ln or GUARD_COMMENT in ln][:5]
    for mount in _cgroup_hierarchies().values():
        found += [f"cgroup {p}" for p in mount.rglob("ringleader-lab") if p.is_dir()][:3]
    return found


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------- CLI ----


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.lab", description="A one-node Kubernetes lab on this machine.")
    p.add_argument("command", choices=("up", "down", "status", "build"))
    args = p.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_builds())
        elif args.command == "up":
            if Lab.current() is not None:
                log("a lab is already up")
                return 0
            started = Lab.up(owned=False)
            print(f"export KUBECONFIG={started.kubeconfig}")
        elif args.command == "down":
            with _locked():
                state = _read_state()
                _teardown(state or {"procs": [], "cgroup": None, "bridge": True})
            left = leftovers()
            if left:
                log("left behind: " + "; ".join(left))
                return 1
        else:
            lab = Lab.current()
            if lab is None:
                print("no lab running" + ("; left behind: " + "; ".join(leftovers()) if leftovers() else ""))
                return 1
            print(f"lab up: KUBECONFIG={lab.kubeconfig}")
            for proc in lab.state["procs"]:
                print(f"  {proc['name']:<24} pid {proc['pid']}")
    except LabError as exc:
        log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
