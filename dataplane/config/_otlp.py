"""The exporter's ``protocol.otlp`` block: the client to each backend (timeout, TLS, headers...)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

from ..config_model import (
    KeepaliveConfig,
    OTLPExporterConfig,
    TLSConfig,
)
from ._errors import ConfigError, join
from ._sending import parse_queue, parse_retry
from ._values import Map, Val

log = logging.getLogger("ringleader.config")


_COMPRESSIONS = ("gzip", "zstd", "snappy", "deflate", "none")
_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")

_UNSUPPORTED_OTLP = {
    "auth": "authentication extensions are not supported by Ringleader; send credentials with headers",
    "middlewares": "middleware extensions are not supported by Ringleader; remove it",
    "batcher": "the batcher is not supported by Ringleader (batching happens at the receiver); remove it",
    "per_rpc_auth": "not supported by Ringleader; send credentials with headers",
    "ca_file": "unknown key; TLS settings belong under tls (tls.ca_file)",
    "insecure": "unknown key; TLS settings belong under tls (tls.insecure)",
}
_UNSUPPORTED_TLS = {
    "cipher_suites": "not supported by Ringleader (gRPC's default cipher suites are used); remove it",
    "curve_preferences": "not supported by Ringleader; remove it",
    "tpm": "TPM-held keys are not supported by Ringleader; remove it",
    "server_name": "unknown key; the collector calls it server_name_override",
}


def parse_otlp(block: Map) -> OTLPExporterConfig:
    defaults = OTLPExporterConfig()
    if block.get("endpoint") is not None:
        log.warning("%s is ignored: the resolver sets each backend's endpoint", join(block.path, "endpoint"))
    timeout = block.get("timeout")
    compression = defaults.compression
    if (value := block.get("compression")) is not None:
        text = value.string()
        compression = cast(Any, value.choice(_COMPRESSIONS) if text else "none")
    level = _parse_compression_params(block.get("compression_params"), compression)
    headers = _parse_headers(block.get("headers"))
    keepalive: KeepaliveConfig | None = None
    if (value := block.get("keepalive")) is not None and not value.is_null:
        ka = value.mapping()
        ka_time = ka.get("time")
        ka_timeout = ka.get("timeout")
        ka_permit = ka.get("permit_without_stream")
        keepalive = KeepaliveConfig(
            time=ka_time.duration() if ka_time else None,
            timeout=ka_timeout.duration() if ka_timeout else None,
            permit_without_stream=ka_permit.boolean() if ka_permit else False,
        )
        ka.done()
    tls = _parse_tls(block.get("tls"))
    queue = parse_queue(block.get("sending_queue"), enabled_by_default=True)
    retry = parse_retry(block.get("retry_on_failure"), enabled_by_default=True)
    balancer = block.get("balancer_name")
    authority = block.get("authority")
    wait = block.get("wait_for_ready")
    read_buf = block.get("read_buffer_size")
    write_buf = block.get("write_buffer_size")
    user_agent = block.get("user_agent")
    max_request = block.get("max_request_size")
    block.done(_UNSUPPORTED_OTLP)
    return OTLPExporterConfig(
        timeout=timeout.duration() if timeout else defaults.timeout,
        compression=compression,
        compression_level=level,
        tls=tls,
        headers=headers,
        keepalive=keepalive,
        sending_queue=queue,
        retry_on_failure=retry,
        balancer_name=balancer.choice(("", "pick_first", "round_robin")) if balancer else "",
        authority=authority.string() if authority else "",
        wait_for_ready=wait.boolean() if wait else False,
        read_buffer_size=(read_buf.size() or None) if read_buf else defaults.read_buffer_size,
        write_buffer_size=(write_buf.size() or None) if write_buf else defaults.write_buffer_size,
        user_agent=user_agent.string() if user_agent else "",
        max_request_size=max_request.size(positive=True) if max_request else defaults.max_request_size,
    )


def _parse_compression_params(value: Val | None, compression: str) -> int:
    """``compression_params: {level: N}``: checked per codec as the collector's configcompression does."""
    if value is None or value.is_null:
        return 0
    block = value.mapping()
    level_value = block.get("level")
    block.done()
    if level_value is None or level_value.is_null:
        return 0
    level = level_value.integer()
    if compression in ("gzip", "deflate"):
        if level == -2:
            level_value.fail("HuffmanOnly (-2) is not supported; use 1 (fastest) to 9 (smallest) or -1 (default)")
        if not -1 <= level <= 9:
            level_value.fail(f"{compression} levels are 1..9 (-1 or 0: the default), got {level}")
    elif compression != "zstd" and level != 0:
        level_value.fail(f"compression {compression} takes no level (got {level}); remove compression_params")
    return level


def _parse_headers(value: Val | None) -> tuple[tuple[str, str], ...]:
    if value is None or value.is_null:
        return ()
    if isinstance(value.raw, list):
        # The collector also accepts headers as a list of {name, value} pairs.
        pairs: list[tuple[str, str]] = []
        for item in value.items():
            entry = item.mapping()
            name = entry.require("name").string(non_empty=True)
            pairs.append((name, entry.require("value").string()))
            entry.done()
        return tuple(pairs)
    block = value.mapping()
    result = []
    for key in block.names():
        if not key.strip():
            block.child(key).fail("header names must not be empty")
        result.append((key, block.child(key).string()))
    return tuple(result)


def _parse_tls(value: Val | None) -> TLSConfig:
    if value is None or value.is_null:
        return TLSConfig()
    block = value.mapping()
    defaults = TLSConfig()
    flags = {key: (v.boolean() if (v := block.get(key)) else False)
             for key in ("insecure", "insecure_skip_verify", "include_system_ca_certs_pool")}  # fmt: skip
    texts: dict[str, str | None] = {}
    for key in ("ca_file", "ca_pem", "cert_file", "cert_pem", "key_file", "key_pem", "server_name_override"):
        v = block.get(key)
        texts[key] = (v.string() or None) if v else None
    for kind in ("ca", "cert", "key"):
        if texts[f"{kind}_file"] and texts[f"{kind}_pem"]:
            raise ConfigError(
                join(block.path, f"{kind}_pem"),
                f"{kind}_file and {kind}_pem are mutually exclusive; set one",
            )
    has_cert = bool(texts["cert_file"] or texts["cert_pem"])
    has_key = bool(texts["key_file"] or texts["key_pem"])
    if has_cert != has_key:
        missing = "key_file or key_pem" if has_cert else "cert_file or cert_pem"
        present = "a client certificate" if has_cert else "a client key"
        raise ConfigError(join(block.path, missing.split()[0]), f"{present} is set, so {missing} is required")
    for key in ("ca_file", "cert_file", "key_file"):
        path = texts[key]
        if path and not Path(path).is_file():
            raise ConfigError(join(block.path, key), f"file not found: {path}")
    min_v = block.get("min_version")
    max_v = block.get("max_version")
    min_version = _tls_version(min_v) if min_v else defaults.min_version
    max_version = _tls_version(max_v) if max_v else defaults.max_version
    if min_version and max_version and _TLS_VERSIONS.index(min_version) > _TLS_VERSIONS.index(max_version):
        raise ConfigError(join(block.path, "min_version"), f"{min_version} is above max_version {max_version}")
    # rustls speaks TLS 1.2 and 1.3 only: refuse older pins instead of silently ignoring them.
    for key, version in (("min_version", min_version), ("max_version", max_version)):
        if version in ("1.0", "1.1"):
            raise ConfigError(
                join(block.path, key),
                f"{version} is not supported: the exporter speaks TLS 1.2 and 1.3 only (set 1.2 or 1.3)",
            )
    if flags["insecure_skip_verify"] and not flags["insecure"]:
        log.warning(
            "%s: the backends' certificates are not verified (the connection is encrypted but not authenticated)",
            join(block.path, "insecure_skip_verify"),
        )
    reload = block.get("reload_interval")
    block.done(_UNSUPPORTED_TLS)
    return TLSConfig(
        insecure=flags["insecure"],
        insecure_skip_verify=flags["insecure_skip_verify"],
        ca_file=texts["ca_file"],
        ca_pem=texts["ca_pem"],
        cert_file=texts["cert_file"],
        cert_pem=texts["cert_pem"],
        key_file=texts["key_file"],
        key_pem=texts["key_pem"],
        server_name_override=texts["server_name_override"],
        include_system_ca_certs_pool=flags["include_system_ca_certs_pool"],
        min_version=min_version,
        max_version=max_version,
        reload_interval=reload.duration() if reload else defaults.reload_interval,
    )


def _tls_version(value: Val) -> str:
    text = value.string()
    if text == "":
        return ""
    return value.choice(_TLS_VERSIONS)
