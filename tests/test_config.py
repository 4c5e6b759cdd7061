"""Config: TOML, env overrides, one clear line per bad key, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cache.config import Config, ConfigError, build_config, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_toml_is_the_defaults() -> None:
    assert load_config(ROOT / "config.toml", env={}) == Config()


def test_env_overrides_toml_lists_as_json() -> None:
    config = build_config(
        {"storage": {"max_items": 5}},
        env={
            "CACHE_STORAGE_MAX_ITEMS": "7",
            "CACHE_FETCH_PORTS": "[80, 8080]",
            "CACHE_GUARANTEES_STRICT": "false",
            "CACHE_TTL_MAX": "120",
            "CACHE_LIMITS_FORMATS": '["PNG"]',
        },
    )
    assert config.storage.max_items == 7
    assert config.fetch.ports == (80, 8080)
    assert config.guarantees.strict is False
    assert config.ttl.max == 120.0
    assert config.limits.formats == ("PNG",)


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        (
            {},
            {"CACHE_STORAGE_MAX_BYTES": "abc"},
            'storage.max_bytes: must be an integer, got "abc"',
        ),
        ({"storage": {"max_bytes": -1}}, {}, "storage.max_bytes: must be positive, got -1"),
        ({"storage": {"max_mappings": 0}}, {}, "storage.max_mappings: must be positive, got 0"),
        (
            {"storage": {"backend": "disk"}},
            {},
            "storage.backend: must be one of memory, tmpfs, redis",
        ),
        ({"server": {"port": 70000}}, {}, "server.port: must be a port number"),
        ({"ttl": {"default": 400}}, {}, "ttl.default: must not exceed ttl.max"),
        ({"limits": {"formats": ["SVG"]}}, {}, "limits.formats: must be a non-empty list"),
        (
            {"fetch": {"allow_hosts": ["localhost"]}},
            {},
            "fetch.allow_hosts: entries must be exact host:port",
        ),
        ({}, {"CACHE_FETCH_PORTS": "80,443"}, "fetch.ports: must be a JSON list"),
        ({}, {"CACHE_GUARANTEES_STRICT": "maybe"}, "guarantees.strict: must be true or false"),
        ({"storage": {"nope": 1}}, {}, "storage.nope: unknown key"),
        ({"stroage": {}}, {}, "stroage: unknown section"),
        ({"blocklist": {"pdq_mode": "maybe"}}, {}, "blocklist.pdq_mode: must be one of auto"),
        (
            {},
            {"CACHE_BLOCKLIST_PDQ_MAX_DISTANCE": "64"},
            "blocklist.pdq_max_distance: must be 0-63",
        ),
        ({"blocklist": {"pdq_min_quality": 101}}, {}, "blocklist.pdq_min_quality: must be 0-100"),
        ({}, {"CACHE_BLOCKLIST_MD5_FILES": "a.txt"}, "blocklist.md5_files: must be a JSON list"),
    ],
)
def test_bad_values_name_the_key(
    data: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(data, env=env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_server_exits_2_with_one_line_on_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[storage]\nmax_bytes = "abc"\n')
    result = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'query-cache: storage.max_bytes: must be an integer, got "abc"'
    ]
    assert result.stdout == ""
