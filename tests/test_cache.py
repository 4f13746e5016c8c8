"""ReuseCache on a real diskcache directory: keys, expiry, intact-file checks, inspect, clear."""

from __future__ import annotations

import time

import pytest

from bgcut_nb.batch.reuse import (
    CacheScope,
    OutputRecord,
    ReuseCache,
    default_cache,
    sha256_bytes,
    sha256_file,
)
from bgcut_nb.contract.wire import UPLOAD_LIFETIME, UPLOAD_REUSE_TTL
from bgcut_nb.core.config import ApiKey

IMAGE = sha256_bytes(b"image bytes")
VARIANT = '{"format":"png"}'


def test_upload_ttl_is_shorter_than_the_services_two_hours(tmp_path):
    assert UPLOAD_LIFETIME == 7200
    assert 0 < UPLOAD_REUSE_TTL < UPLOAD_LIFETIME
    assert ReuseCache(tmp_path).upload_ttl == UPLOAD_REUSE_TTL
    with pytest.raises(ValueError):
        ReuseCache(tmp_path, upload_ttl=7200)
    with pytest.raises(ValueError):
        ReuseCache(tmp_path, upload_ttl=0)


def test_uploads_are_keyed_by_backend_key_and_image_and_expire(tmp_path):
    cache = ReuseCache(tmp_path, upload_ttl=0.3)
    cache.put_upload(CacheScope("remote:http://a", "fp1"), IMAGE, "uf-1")
    assert cache.get_upload(CacheScope("remote:http://a", "fp1"), IMAGE) == "uf-1"
    assert cache.get_upload(CacheScope("remote:http://b", "fp1"), IMAGE) is None  # other backend
    assert cache.get_upload(CacheScope("remote:http://a", "fp2"), IMAGE) is None  # other key
    assert (
        cache.get_upload(CacheScope("remote:http://a", "fp1"), sha256_bytes(b"x")) is None
    )  # other image
    assert cache.peek_upload(CacheScope("remote:http://a", "fp1"), IMAGE)
    time.sleep(0.4)
    assert cache.get_upload(CacheScope("remote:http://a", "fp1"), IMAGE) is None  # expired
    assert cache.counters["upload_hits"] == 1 and cache.counters["upload_misses"] == 4


def test_evicted_upload_is_forgotten(tmp_path):
    cache = ReuseCache(tmp_path)
    cache.put_upload(CacheScope("b", ""), IMAGE, "uf")
    cache.evict_upload(CacheScope("b", ""), IMAGE)
    assert cache.get_upload(CacheScope("b", ""), IMAGE) is None
    assert cache.counters["upload_evictions"] == 1


def test_outputs_are_reused_only_while_the_file_is_intact(tmp_path):
    cache = ReuseCache(tmp_path / "c")
    out = tmp_path / "out.png"
    out.write_bytes(b"rendered output")
    record = OutputRecord(str(out), out.stat().st_size, sha256_file(out), "file:///x", "uf")
    cache.put_output(CacheScope("local:/s", ""), IMAGE, VARIANT, record)
    assert cache.get_output(CacheScope("local:/s", ""), IMAGE, VARIANT) == record
    assert cache.get_output(CacheScope("local:/s", ""), IMAGE, '{"format":"jpg"}') is None
    assert cache.get_output(CacheScope("local:/other", ""), IMAGE, VARIANT) is None
    assert cache.get_output(CacheScope("local:/s", "another-key"), IMAGE, VARIANT) is None

    out.write_bytes(b"rendered OUTPUT")  # same size, other bytes
    assert cache.get_output(CacheScope("local:/s", ""), IMAGE, VARIANT) is None
    assert cache.counters["output_stale"] == 1
    # the stale entry is gone, even once the file is back
    out.write_bytes(b"rendered output")
    assert cache.get_output(CacheScope("local:/s", ""), IMAGE, VARIANT) is None


def test_deleted_output_is_a_miss(tmp_path):
    cache = ReuseCache(tmp_path / "c")
    out = tmp_path / "o.png"
    out.write_bytes(b"abc")
    cache.put_output(
        CacheScope("b", ""), IMAGE, VARIANT, OutputRecord(str(out), 3, sha256_file(out))
    )
    out.unlink()
    assert cache.get_output(CacheScope("b", ""), IMAGE, VARIANT, count=False) is None
    assert cache.counters == {}


def test_survives_reopening_inspect_stats_and_clear(tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"abc")
    with ReuseCache(tmp_path / "c") as cache:
        cache.put_upload(CacheScope("b", "fp"), IMAGE, "uf")
        cache.put_output(
            CacheScope("b", "fp"), IMAGE, VARIANT, OutputRecord(str(out), 3, sha256_file(out))
        )
    cache = ReuseCache(tmp_path / "c")
    assert cache.get_upload(CacheScope("b", "fp"), IMAGE) == "uf"
    table = cache.inspect()
    assert sorted(table["kind"]) == ["output", "upload"]
    assert set(table["backend"]) == {"b"} and set(table["image_sha256"]) == {IMAGE}
    assert table.loc[table["kind"] == "upload", "expires_at"].item() > time.time()
    stats = cache.stats()
    assert stats["uploads"] == 1 and stats["outputs"] == 1
    assert stats["directory"] == str(tmp_path / "c") and stats["size_limit"] > 0
    assert stats["volume_bytes"] > 0
    assert cache.clear("upload") == 1
    assert cache.stats()["uploads"] == 0 and cache.stats()["outputs"] == 1
    assert cache.clear() == 1
    assert cache.inspect().empty
    assert out.read_bytes() == b"abc"  # clearing never deletes outputs
    with pytest.raises(ValueError):
        cache.clear("everything")


def test_directory_comes_from_bgcut_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BGCUT_CACHE_DIR", str(tmp_path / "env-cache"))
    cache = default_cache()
    assert cache.directory == tmp_path / "env-cache"
    assert (tmp_path / "env-cache" / "cache.db").is_file()
    assert default_cache() is cache
    assert default_cache(tmp_path / "arg").directory == tmp_path / "arg"


def test_size_limit_is_enforced(tmp_path):
    cache = ReuseCache(tmp_path, size_limit=64 * 1024)
    for i in range(3000):
        cache.put_upload(CacheScope("b", ""), sha256_bytes(str(i).encode()), "u" * 200)
    assert cache._cache.volume() < 64 * 1024 * 4  # culled close to the limit
    assert cache.stats()["uploads"] < 3000


def test_key_fingerprint_is_stored_never_the_key(tmp_path):
    key = ApiKey("sk-live-SUPERSECRET-123")
    cache = ReuseCache(tmp_path / "c")
    cache.put_upload(CacheScope("remote:http://127.0.0.1:1", key.fingerprint), IMAGE, "uf")
    cache.close()
    blob = b"".join(p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert key.fingerprint.encode() in blob  # the check below would catch the key
    assert b"SUPERSECRET" not in blob


def test_entries_of_an_older_version_are_read_and_cleared_by_kind(tmp_path):
    """Entries written before they were tagged by kind still answer, and ``clear(kind)`` (one
    query by tag) removes them too."""
    import diskcache

    out = tmp_path / "o.png"
    out.write_bytes(b"abc")
    scope = CacheScope("b", "fp")
    with diskcache.Cache(str(tmp_path / "c")) as older:  # the layout of older versions, no tags
        older.set(("upload", "b", "fp", IMAGE), "uf", expire=600)
        older.set(("output", IMAGE, VARIANT, "b", "fp"), {"path": str(out), "size": 3,
                                                         "sha256": sha256_file(out)})  # fmt: skip
    cache = ReuseCache(tmp_path / "c")
    assert cache.get_upload(scope, IMAGE) == "uf"
    assert cache.get_output(scope, IMAGE, VARIANT).path == str(out)
    assert cache._cache.get(("upload", "b", "fp", IMAGE), expire_time=True)[1] > time.time()
    assert cache.clear("upload") == 1 and cache.get_upload(scope, IMAGE) is None
    assert cache.clear("output") == 1 and cache.get_output(scope, IMAGE, VARIANT) is None
    cache.put_upload(scope, IMAGE, "uf2")
    assert cache.clear("output") == 0 and cache.clear("upload") == 1
