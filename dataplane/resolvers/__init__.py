"""Resolvers: where the backend set comes from (see :mod:`dataplane.resolvers.base`).

:func:`build_resolver` maps a resolver config to its implementation. Resolvers
with optional or heavy dependencies are imported only when configured.
"""

from __future__ import annotations

from ..config_model import (
    AWSCloudMapResolverConfig,
    DNSResolverConfig,
    K8sResolverConfig,
    ResolverConfig,
    StaticResolverConfig,
)
from ..telemetry import Telemetry
from .base import PollingResolver, Resolver, ResolverError

__all__ = ["PollingResolver", "Resolver", "ResolverError", "build_resolver"]


def build_resolver(cfg: ResolverConfig, telemetry: Telemetry) -> Resolver:
    if isinstance(cfg, StaticResolverConfig):
        from .static import StaticResolver

        return StaticResolver(telemetry, cfg.hostnames)
    if isinstance(cfg, DNSResolverConfig):
        from .dns import DNSResolver

        return DNSResolver(telemetry, cfg)
    if isinstance(cfg, K8sResolverConfig):
        from .k8s import K8sResolver

        return K8sResolver(telemetry, cfg)
    if isinstance(cfg, AWSCloudMapResolverConfig):
        from .aws import AWSCloudMapResolver

        return AWSCloudMapResolver(telemetry, cfg)
    raise TypeError(f"unknown resolver config {type(cfg).__name__}")
