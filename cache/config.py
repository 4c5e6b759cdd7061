"""Typed, frozen configuration: the TOML file, then `CACHE_<SECTION>_<KEY>` env overrides.

A bad value stops start-up with one line that names the key, so an operator never has to
guess which of forty settings was wrong.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

MiB = 1024 * 1024
GiB = 1024 * MiB
ALL_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
BACKENDS = ("memory", "tmpfs", "redis")
PDQ_MODES = ("auto", "on", "off")
LOOPS = ("auto", "uvloop", "asyncio")
VERIFY_LEVELS = ("structure", "decode")


class ConfigError(ValueError):
    """One bad key: the message is the whole line shown to the operator."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    shutdown_timeout: float = 10.0
    loop: str = "auto"  # uvloop when it is installed (Linux), else asyncio
    max_connections: int = 256  # open connections; past it a connection gets 503 and a close
    header_timeout: float = 10.0  # s from connect (or the last response) to complete headers
    audit_backlog: int = 10_000  # audit lines waiting to be written before uploads get 503


@dataclass(frozen=True)
class OpsConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    admin_token: str = ""


@dataclass(frozen=True)
class StorageConfig:
    backend: str = "memory"
    path: str = "/dev/shm/query-cache"  # noqa: S108 (checked at start: 0700, owned, on tmpfs)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    redis_allow_persistence: bool = False
    key_prefix: str = "qc:"
    max_bytes: int = GiB
    max_items: int = 100_000
    # memory backend: anonymous mappings for item bytes at most (and never more than half of
    # vm.max_map_count); past it, items are held in the heap (cache_memory_heap_items_total)
    max_mappings: int = 32_768


@dataclass(frozen=True)
class TtlConfig:
    default: float = 60.0
    max: float = 300.0
    sweep_interval: float = 1.0
    grace: float = 1.0


@dataclass(frozen=True)
class LimitsConfig:
    max_upload_bytes: int = 20 * MiB
    max_side: int = 16384
    max_pixels: int = 50_000_000
    max_frames: int = 256
    formats: tuple[str, ...] = ALL_FORMATS
    max_thumbnail_size: int = 1024
    verify: str = "structure"  # walk the container ("structure") or decode it ("decode")
    max_uploads_in_flight: int = 64  # bodies being read or checked at once; more get 503
    body_idle_timeout: float = 10.0  # s without a byte of a request body: cut with 408
    body_timeout: float = 60.0  # s for a whole request body: cut with 408
    decode_budget_bytes: int = 256 * MiB  # decoded pixels in flight, all requests together


@dataclass(frozen=True)
class FetchConfig:
    enabled: bool = True
    connect_timeout: float = 3.0
    timeout: float = 10.0
    max_redirects: int = 3
    ports: tuple[int, ...] = (80, 443)
    allow_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuaranteesConfig:
    strict: bool = True
    require_tmpfs: bool = True
    lock_memory: bool = True


@dataclass(frozen=True)
class BlocklistConfig:
    sha256_files: tuple[str, ...] = ()
    md5_files: tuple[str, ...] = ()
    sha1_files: tuple[str, ...] = ()
    pdq_files: tuple[str, ...] = ()
    pdq_mode: str = "auto"  # auto: on when pdq_files is not empty
    pdq_max_distance: int = 31
    pdq_min_quality: int = 50

    @property
    def pdq_on(self) -> bool:
        """Whether every accepted image gets a PDQ hash (and PDQ lists are matched)."""
        return self.pdq_mode == "on" or (self.pdq_mode == "auto" and bool(self.pdq_files))


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ttl: TtlConfig = field(default_factory=TtlConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    guarantees: GuaranteesConfig = field(default_factory=GuaranteesConfig)
    blocklist: BlocklistConfig = field(default_factory=BlocklistConfig)


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number (0-65535)"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _formats(value: tuple[str, ...]) -> str | None:
    unknown = [fmt for fmt in value if fmt not in ALL_FORMATS]
    if unknown or not value:
        return f"must be a non-empty list drawn from {', '.join(ALL_FORMATS)}"
    return None


def _ports(value: tuple[int, ...]) -> str | None:
    return None if all(1 <= port <= 65535 for port in value) else "ports must be 1-65535"


def _host_ports(value: tuple[str, ...]) -> str | None:
    for entry in value:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"entries must be exact host:port pairs, got {entry!r}"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "server.port": _port,
    "server.shutdown_timeout": _positive,
    "ops.port": _port,
    "server.loop": _one_of(LOOPS),
    "server.max_connections": _positive,
    "server.header_timeout": _positive,
    "server.audit_backlog": _positive,
    "storage.backend": _one_of(BACKENDS),
    "storage.max_bytes": _positive,
    "storage.max_items": _positive,
    "storage.max_mappings": _positive,
    "ttl.default": _positive,
    "ttl.max": _positive,
    "ttl.sweep_interval": _positive,
    "ttl.grace": lambda v: None if v >= 0 else "must be zero or more",
    "limits.max_upload_bytes": _positive,
    "limits.max_side": _positive,
    "limits.max_pixels": _positive,
    "limits.max_frames": _positive,
    "limits.formats": _formats,
    "limits.max_thumbnail_size": _positive,
    "limits.verify": _one_of(VERIFY_LEVELS),
    "limits.max_uploads_in_flight": _positive,
    "limits.body_idle_timeout": _positive,
    "limits.body_timeout": _positive,
    "limits.decode_budget_bytes": _positive,
    "fetch.connect_timeout": _positive,
    "fetch.timeout": _positive,
    "fetch.max_redirects": lambda v: None if v >= 0 else "must be zero or more",
    "fetch.ports": _ports,
    "fetch.allow_hosts": _host_ports,
    "blocklist.pdq_mode": _one_of(PDQ_MODES),
    # Multi-index hashing (16-bit words) stops paying off past 63 bits; PDQ advises 31.
    "blocklist.pdq_max_distance": lambda v: None if 0 <= v <= 63 else "must be 0-63",
    "blocklist.pdq_min_quality": lambda v: None if 0 <= v <= 100 else "must be 0-100",
}


def _coerce(key: str, raw: Any, kind: Any, from_env: bool) -> Any:
    """Turn a TOML or env value into `kind`, or raise one ConfigError naming `key`."""
    if get_origin(kind) is tuple:
        inner = get_args(kind)[0]
        value = raw
        if from_env:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(f"{key}: must be a JSON list, got {raw!r}") from None
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list, got {raw!r}")
        return tuple(_coerce(key, item, inner, False) for item in value)
    if kind is bool:
        if (
            from_env
            and isinstance(raw, str)
            and raw.lower() in ("true", "1", "yes", "false", "0", "no")
        ):
            return raw.lower() in ("true", "1", "yes")
        if isinstance(raw, bool):
            return raw
        raise ConfigError(f"{key}: must be true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
        raise ConfigError(f"{key}: must be an integer, got {json.dumps(raw)}")
    if kind is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if from_env and isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise ConfigError(f"{key}: must be a number, got {json.dumps(raw)}")
    if kind is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"{key}: must be a string, got {raw!r}")
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover


def _build_section(
    name: str, cls: type[Any], table: Mapping[str, Any], env: Mapping[str, str]
) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key")
    values: dict[str, Any] = {}
    for f in fields(cls):
        key = f"{name}.{f.name}"
        env_name = f"CACHE_{name}_{f.name}".upper()
        if env_name in env:
            values[f.name] = _coerce(key, env[env_name], hints[f.name], True)
        elif f.name in table:
            values[f.name] = _coerce(key, table[f.name], hints[f.name], False)
    section = cls(**values)
    for f in fields(cls):
        key = f"{name}.{f.name}"
        check = _CHECKS.get(key)
        problem = check(getattr(section, f.name)) if check else None
        if problem:
            value = getattr(section, f.name)
            raise ConfigError(f"{key}: {problem}, got {json.dumps(value)}")
    return section


def build_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML mapping plus env overrides into a Config."""
    env = os.environ if env is None else env
    hints = get_type_hints(Config)
    for name in data:
        if name not in hints:
            raise ConfigError(f"{name}: unknown section")
    sections: dict[str, Any] = {}
    for name, cls in hints.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{name}: must be a table")
        sections[name] = _build_section(name, cls, table, env)
    config = Config(**sections)
    _cross_check(config)
    return config


def _cross_check(config: Config) -> None:
    if config.ttl.default > config.ttl.max:
        raise ConfigError(
            f"ttl.default: must not exceed ttl.max ({config.ttl.max:g}), got {config.ttl.default:g}"
        )
    if config.limits.max_upload_bytes > config.storage.max_bytes:
        raise ConfigError("limits.max_upload_bytes: must not exceed storage.max_bytes")


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (TOML; None means defaults only), apply env overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    return build_config(data, env)


def with_overrides(config: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy of `config` with some keys changed: handy for tests and benches."""
    changed = {name: replace(getattr(config, name), **values) for name, values in sections.items()}
    return replace(config, **changed)
