"""The exporter's ``resolver`` block: static, dns, k8s or aws_cloud_map."""

from __future__ import annotations

import re
from typing import Any, cast

from ..config_model import (
    AWSCloudMapResolverConfig,
    DNSResolverConfig,
    K8sResolverConfig,
    ResolverConfig,
    StaticResolverConfig,
)
from ..hostport import split_host_port, valid_port
from ._errors import ConfigError, join
from ._values import Map, Val

RESOLVERS = ("static", "dns", "k8s", "aws_cloud_map")
_K8S_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def parse_resolver(block: Map) -> ResolverConfig:
    present = sorted(key for key in block.names() if key in RESOLVERS)
    for key in block.names():
        if key not in RESOLVERS:
            hint = "; the Kubernetes resolver is called k8s" if key in ("kubernetes", "k8s_svc") else ""
            raise ConfigError(block.child(key).path, f"unknown resolver (valid: {', '.join(RESOLVERS)}){hint}")
    if len(present) != 1:
        raise ConfigError(block.path, f"exactly one resolver must be set, found {len(present)} ({', '.join(present)})")
    kind = present[0]
    body = block.child(kind).mapping()
    result: ResolverConfig
    if kind == "static":
        hostnames = body.require("hostnames", " (a list of backend host:port)")
        items = hostnames.items()
        if not items:
            hostnames.fail("must list at least one backend")
        result = StaticResolverConfig(hostnames=tuple(_backend(item) for item in items))
    elif kind == "dns":
        dns_defaults = DNSResolverConfig(hostname="")
        hostname = body.require("hostname").string(non_empty=True)
        port = _dns_port(body.get("port"))
        interval = body.get("interval")
        timeout = body.get("timeout")
        server = body.get("server")
        srv = body.get("srv")
        result = DNSResolverConfig(
            hostname=hostname,
            port=port,
            interval=interval.duration(positive=True) if interval else dns_defaults.interval,
            timeout=timeout.duration(positive=True) if timeout else dns_defaults.timeout,
            server=_dns_server(server) if server else None,
            srv=srv.boolean() if srv else False,
        )
        if result.srv and result.port:
            raise ConfigError(join(body.path, "port"), "cannot be used with srv: true (SRV records carry the ports)")
    elif kind == "k8s":
        k8s_defaults = K8sResolverConfig(service="")
        service = body.require("service", ' ("name" or "name.namespace")')
        ports = body.get("ports")
        port_list = k8s_defaults.ports
        if ports is not None:
            port_list = tuple(item.port() for item in ports.items())
            if not port_list:
                ports.fail("must list at least one port")
        k8s_timeout = body.get("timeout")
        return_hostnames = body.get("return_hostnames")
        debounce = body.get("debounce")
        result = K8sResolverConfig(
            service=_k8s_service(service),
            ports=port_list,
            timeout=k8s_timeout.duration(positive=True) if k8s_timeout else k8s_defaults.timeout,
            return_hostnames=return_hostnames.boolean() if return_hostnames else False,
            debounce=debounce.duration() if debounce else k8s_defaults.debounce,
        )
    else:
        aws_defaults = AWSCloudMapResolverConfig(namespace="", service_name="")
        namespace = body.require("namespace").string(non_empty=True)
        service_name = body.require("service_name").string(non_empty=True)
        health = body.get("health_status")
        interval = body.get("interval")
        timeout = body.get("timeout")
        aws_port = body.get("port")
        owner = body.get("owner_account")
        health_status = aws_defaults.health_status
        if health is not None:
            health_status = cast(Any, health.choice(("HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL")))
        result = AWSCloudMapResolverConfig(
            namespace=namespace,
            service_name=service_name,
            health_status=health_status,
            interval=interval.duration(positive=True) if interval else aws_defaults.interval,
            timeout=timeout.duration(positive=True) if timeout else aws_defaults.timeout,
            port=aws_port.port() if aws_port else None,
            owner_account=owner.string(non_empty=True) if owner else None,
        )
    body.done()
    return result


def _backend(item: Val) -> str:
    value = item.string(non_empty=True)
    if any(ch.isspace() for ch in value) or "/" in value:
        item.fail(f'expected "host" or "host:port", got {value!r}')
    parts = split_host_port(value)
    if parts is not None and (not parts[0] or not valid_port(parts[1])):
        item.fail(f'expected "host" or "host:port" with a port between 1 and 65535, got {value!r}')
    return value


def _dns_port(value: Val | None) -> str:
    # Upstream's port is a string; YAML writers naturally write a number. Accept both.
    if value is None:
        return ""
    raw = value._typed()
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(value.port())
    text = value.string()
    if text == "":
        return ""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        value.fail(f"expected a port between 1 and 65535, got {text!r}")
    return str(int(text))


def _dns_server(value: Val) -> str:
    text = value.string(non_empty=True)
    parts = split_host_port(text)
    host_ok = bool(parts[0]) if parts else not any(ch.isspace() or ch in "/[]" for ch in text)
    if not host_ok or (parts and (not valid_port(parts[1]))):
        value.fail(f'expected "host" or "host:port" of a DNS server (port 53 if omitted), got {text!r}')
    return text


def _k8s_service(value: Val) -> str:
    # "name.ns.svc.cluster.local" is accepted too: the resolver reads it as name.ns.
    text = value.string(non_empty=True)
    parts = text.split(".")
    if not all(_K8S_LABEL.match(part) for part in parts) or (len(parts) > 2 and parts[2] != "svc"):
        value.fail(
            f'expected "name", "name.namespace" or "name.namespace.svc[.cluster-domain]" '
            f"(lowercase DNS labels), got {text!r}"
        )
    return text
