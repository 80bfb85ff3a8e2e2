"""Aligned-crop cache: round trip, misses, atomic writes, and what the key depends on."""

from __future__ import annotations

import os

import numpy as np
import pytest

from facefeat.face.cache import AlignedCache, cache_key

KEY_ARGS = dict(image_id="ab" * 32, output_size=256, transform_size=1024,
                settings={"face": {"detector": "hog", "upsample": 1}, "padding": True, "landmarks": [[1, 2]] * 68})


def test_round_trip_is_lossless(tmp_path):
    cache = AlignedCache(tmp_path / "aligned")
    key = cache_key(**KEY_ARGS)
    assert cache.get(key) is None and key not in cache
    img = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    path = cache.put(key, img)
    assert path == tmp_path / "aligned" / key[:2] / f"{key}.png" and key in cache
    back = cache.get(key)
    assert back.dtype == np.uint8 and back.flags.writeable
    np.testing.assert_array_equal(back, img)
    # overwrite is fine and leaves no temporary file behind
    cache.put(key, img[::-1].copy())
    np.testing.assert_array_equal(cache.get(key), img[::-1])
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import PIL.Image

    cache = AlignedCache(tmp_path)
    key = cache_key(**KEY_ARGS)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PIL.Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        cache.put(key, np.zeros((8, 8, 3), np.uint8))
    assert cache.get(key) is None
    assert os.listdir(tmp_path / key[:2]) == []


def test_unreadable_file_is_a_miss(tmp_path):
    cache = AlignedCache(tmp_path)
    key = cache_key(**KEY_ARGS)
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b"\x89PNG truncated")
    assert cache.get(key) is None


def test_bad_keys_and_images(tmp_path):
    cache = AlignedCache(tmp_path)
    with pytest.raises(ValueError, match="hex"):
        cache.path("../../etc/passwd")
    with pytest.raises(ValueError, match="uint8"):
        cache.put(cache_key(**KEY_ARGS), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="JSON"):
        cache_key(**{**KEY_ARGS, "settings": {"x": float("nan")}})


def test_key_depends_on_everything_that_changes_pixels():
    base = cache_key(**KEY_ARGS)
    assert len(base) == 64 and base == cache_key(**KEY_ARGS)
    # dict order and numpy vs plain values do not matter
    reordered = dict(reversed(list(KEY_ARGS["settings"].items())))
    assert cache_key(**{**KEY_ARGS, "settings": reordered}) == base
    as_numpy = {**KEY_ARGS["settings"], "landmarks": np.array(KEY_ARGS["settings"]["landmarks"])}
    assert cache_key(**{**KEY_ARGS, "settings": as_numpy}) == base
    # the two methods give the same pixels, hence the same key
    assert cache_key(**KEY_ARGS, method="reference") == base
    changed = [
        cache_key(**{**KEY_ARGS, "image_id": "cd" * 32}),
        cache_key(**{**KEY_ARGS, "output_size": 512}),
        cache_key(**{**KEY_ARGS, "transform_size": 2048}),
        cache_key(**{**KEY_ARGS, "settings": {**KEY_ARGS["settings"], "padding": False}}),
        cache_key(**{**KEY_ARGS, "settings": {**KEY_ARGS["settings"], "face": {"detector": "cnn", "upsample": 1}}}),
        cache_key(**KEY_ARGS, landmarks_model_sha256="0" * 64),
        cache_key(**KEY_ARGS, enable_padding=False),
    ]
    assert len(set(changed)) == len(changed) and base not in changed
