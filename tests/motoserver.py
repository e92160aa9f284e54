"""Test helper: moto's standalone AWS emulator as a real server on loopback.

:class:`MotoServer` runs ``python -m moto.server`` as a subprocess on a free
127.0.0.1 port; :func:`aws_env` is the environment that points boto3 (in the
tests and in the resolver under test) at it with fake credentials, so nothing
ever reaches real AWS. :class:`CloudMap` drives the emulator's Cloud Map API
to set up namespaces, services and instances.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import boto3

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MotoServer:
    """One moto server process. Use as a context manager, or call start()/stop()."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 30.0) -> MotoServer:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server not answering on {self.url} after {deadline}s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint), between tests."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def aws_env(endpoint_url: str) -> dict[str, str]:
    """Standard AWS environment variables for talking to the emulator only."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        # DiscoverInstances goes to "data-<host>": impossible with an IP address.
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
        # Never read the developer's own AWS files or the instance metadata service.
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "1",
    }


class CloudMap:
    """Set-up calls against the emulator's Cloud Map (servicediscovery) API."""

    def __init__(self, endpoint_url: str) -> None:
        self.client: Any = boto3.session.Session().client(
            "servicediscovery",
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_service(self, namespace: str, service: str) -> str:
        """Create (or reuse) an HTTP namespace and create a service with a custom health
        check in it; returns the service id."""
        ns_id = self._namespace_id(namespace)
        if ns_id is None:
            self.client.create_http_namespace(Name=namespace)
            ns_id = self._namespace_id(namespace)
        created = self.client.create_service(
            Name=service, NamespaceId=ns_id, HealthCheckCustomConfig={"FailureThreshold": 1}
        )
        service_id: str = created["Service"]["Id"]
        return service_id

    def _namespace_id(self, name: str) -> str | None:
        return next((n["Id"] for n in self.client.list_namespaces()["Namespaces"] if n["Name"] == name), None)

    def register(self, service_id: str, instance_id: str, **attributes: str) -> None:
        self.client.register_instance(ServiceId=service_id, InstanceId=instance_id, Attributes=attributes)

    def register_many(self, service_id: str, count: int, port: str = "4317") -> list[str]:
        """Register ``count`` instances with distinct 10.x IPv4 addresses; returns their endpoints."""
        endpoints = []
        for i in range(count):
            ip = f"10.1.{i // 250}.{i % 250 + 1}"
            self.register(service_id, f"i-{i:04d}", AWS_INSTANCE_IPV4=ip, AWS_INSTANCE_PORT=port)
            endpoints.append(f"{ip}:{port}")
        return endpoints

    def deregister(self, service_id: str, instance_id: str) -> None:
        self.client.deregister_instance(ServiceId=service_id, InstanceId=instance_id)

    def set_health(self, service_id: str, instance_id: str, status: str) -> None:
        self.client.update_instance_custom_health_status(
            ServiceId=service_id, InstanceId=instance_id, Status=status
        )
