"""The ``receivers`` section: exactly one ``otlp`` receiver (gRPC and/or HTTP)."""

from __future__ import annotations

from ..config_model import (
    GRPCReceiverConfig,
    HTTPReceiverConfig,
    ReceiverConfig,
)
from ._collector import pick_component
from ._errors import ConfigError
from ._service import Service
from ._values import Map


def parse_receivers(root: Map, service: Service) -> tuple[str, ReceiverConfig]:
    receiver_id, otlp = pick_component(root, "receivers", ("otlp",), "otlp receiver", service)
    protocols = otlp.require("protocols", " (grpc and/or http)").mapping()
    otlp.done()

    grpc_cfg: GRPCReceiverConfig | None = None
    grpc_val = protocols.get("grpc")
    if grpc_val is not None:
        grpc_block = grpc_val.mapping()
        defaults = GRPCReceiverConfig()
        endpoint = grpc_block.get("endpoint")
        mib = grpc_block.get("max_recv_msg_size_mib")
        grpc_cfg = GRPCReceiverConfig(
            endpoint=endpoint.hostport() if endpoint else defaults.endpoint,
            max_recv_msg_size=int(mib.number(above=0) * 1024 * 1024) if mib else defaults.max_recv_msg_size,
        )
        grpc_block.done(_UNSUPPORTED_RECEIVER_KEYS)

    http_cfg: HTTPReceiverConfig | None = None
    http_val = protocols.get("http")
    if http_val is not None:
        http_block = http_val.mapping()
        defaults_http = HTTPReceiverConfig()
        endpoint = http_block.get("endpoint")
        body = http_block.get("max_request_body_size")
        http_cfg = HTTPReceiverConfig(
            endpoint=endpoint.hostport() if endpoint else defaults_http.endpoint,
            max_request_body_size=body.size(positive=True) if body else defaults_http.max_request_body_size,
        )
        http_block.done(_UNSUPPORTED_RECEIVER_KEYS)
    protocols.done()
    if grpc_cfg is None and http_cfg is None:
        raise ConfigError(protocols.path, "at least one protocol (grpc or http) must be enabled")
    return receiver_id, ReceiverConfig(grpc=grpc_cfg, http=http_cfg)


_UNSUPPORTED_RECEIVER_KEYS = {
    key: "not supported by Ringleader's receiver (supported: endpoint and the size limit); remove it"
    for key in (
        "tls", "auth", "transport", "keepalive", "max_concurrent_streams", "read_buffer_size",
        "write_buffer_size", "include_metadata", "cors", "traces_url_path", "logs_url_path",
        "metrics_url_path", "response_headers", "compression_algorithms", "middlewares",
    )
}  # fmt: skip
