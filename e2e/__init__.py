"""End-to-end test helpers: real processes (a Kubernetes control plane, ...) on loopback."""
