"""Training images: folders, run caches, sizes, errors, sampler, holdout."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest

from facefeat.errors import InputError
from facefeat.training.data import InfiniteSampler, TrainingImages, load_training_images


def _write(folder, faces, size, prefix="f"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(faces):
        PIL.Image.fromarray(f).resize((size, size), PIL.Image.LANCZOS).save(folder / f"{prefix}{i:02d}.png")


def test_plain_folder_is_read_in_order_and_resized(tmp_path, faces32):
    _write(tmp_path / "crops" / "sub", faces32[:5], 64)
    imgs = load_training_images(tmp_path / "crops", 32, max_memory_bytes=0)  # read from disk per batch
    assert len(imgs) == 5 and imgs.arrays is None and imgs.source["kind"] == "folder"
    batch = imgs.load([0, 3], flip=[False, True])
    assert batch.shape == (2, 3, 32, 32) and str(batch.dtype) == "torch.uint8"
    again = load_training_images(tmp_path / "crops", 32)  # in memory: same pixels, same fingerprint
    assert again.arrays is not None
    assert np.array_equal(batch.numpy(), again.load([0, 3], flip=[False, True]).numpy())
    assert imgs.fingerprint() == again.fingerprint()
    assert np.array_equal(batch[1].numpy(), again.load([3]).numpy()[0][:, :, ::-1])


def test_run_folder_uses_the_aligned_cache_at_the_training_size(tmp_path, faces32):
    run = tmp_path / "run"
    (run / "run.json").parent.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"n_images": 4}))
    _write(run / ".cache" / "aligned" / "ab", faces32[:4], 64, prefix="a")
    _write(run / ".cache" / "aligned" / "cd", faces32[:4], 128, prefix="b")
    imgs = load_training_images(run, 32)
    assert imgs.source["kind"] == "run-cache" and imgs.source["sizes"] == [64]
    assert len(imgs) == 4 and len(imgs.skipped) == 4  # the 128 px crops are counted, not used
    imgs = load_training_images(run, 128)
    assert imgs.source["sizes"] == [128]


def test_errors_name_the_problem(tmp_path, faces32):
    with pytest.raises(InputError, match="does not exist"):
        load_training_images(tmp_path / "nope", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        load_training_images(tmp_path / "empty", 32)
    (tmp_path / "photos").mkdir()
    PIL.Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "photos" / "p.jpg")
    with pytest.raises(InputError, match="not square.*--align"):
        load_training_images(tmp_path / "photos", 32)
    (tmp_path / "run" / ".cache").mkdir(parents=True)
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(InputError, match="align.sizes=\\[32\\]"):
        load_training_images(tmp_path / "run", 32)


@pytest.mark.slow
def test_align_on_the_fly_counts_photos_without_a_face(tmp_path):
    from tests.conftest import EXAMPLES

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("Tom_Cruise_avp_2014_4.jpg", "dogs.jpg"):
        (photos / name).write_bytes((EXAMPLES / name).read_bytes())
    imgs = load_training_images(photos, 32, align=True, cache_dir=tmp_path / "cache")
    assert len(imgs) == 1 and imgs.skipped == [(str(photos / "dogs.jpg"), "no_face")]
    assert list((tmp_path / "cache").rglob("*.png"))
    again = load_training_images(photos, 32, align=True, cache_dir=tmp_path / "cache")  # from the cache
    assert np.array_equal(again.arrays, imgs.arrays)


def test_sampler_epochs_mirror_and_state():
    s = InfiniteSampler(5, seed=1, mirror=True)
    idx, flips = s.next(10)
    assert sorted(zip(idx, flips)) == sorted((i, f) for i in range(5) for f in (False, True))
    s.next(3)
    state = s.state_dict()
    a = s.next(7)
    t = InfiniteSampler(5, seed=1, mirror=True)
    t.load_state_dict(state)
    assert t.next(7) == a
    with pytest.raises(InputError, match="saved for 5 images"):
        InfiniteSampler(6, seed=1, mirror=True).load_state_dict(state)


def test_holdout_split_is_deterministic(faces32):
    imgs = TrainingImages(resolution=32, arrays=faces32[:10])
    train, held = imgs.split(3, seed=0)
    train2, held2 = imgs.split(3, seed=0)
    assert len(train) == 7 and len(held) == 3
    assert train.fingerprint() == train2.fingerprint() and held.fingerprint() == held2.fingerprint()
    assert imgs.split(0)[1] is None
    assert len(imgs.split(100)[0]) == 2  # at least two images stay for training
