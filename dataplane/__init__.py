"""Ringleader data plane: a trace-aware OTLP load balancer (tier 1 of tail sampling)."""

__version__ = "0.1.0"
