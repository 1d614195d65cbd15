"""Image pools: ImageFolder reading, held-out split for the k-NN monitor, random pools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from explorer.ssl.data import load_pretraining_pool, split_folder


def test_image_folder_pool_and_heldout_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for ci, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        for i in range(12):
            arr = np.full((30 + i, 50, 3), 40 + 150 * ci, np.uint8) + rng.integers(0, 5, (30 + i, 50, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    pool = load_pretraining_pool(str(tmp_path), size=24)
    assert pool.images.shape == (24, 24, 24, 3) and pool.images.dtype == torch.uint8
    assert pool.labels.tolist() == [0] * 12 + [1] * 12
    # colour identifies the class after the resize+centre crop
    assert pool.images[:12].float().mean() < 60 and pool.images[12:].float().mean() > 180
    train, (bank, query) = split_folder(pool, 0.25, n_train=4, n_test=2, seed=0)
    assert len(train) == 18 and len(bank) == 3 and len(query) == 2
    # held-out images are not in the training pool
    flat = {bytes(x.numpy().tobytes()) for x in train.images}
    assert not any(bytes(x.numpy().tobytes()) in flat for x in torch.cat([bank.images, query.images]))


def test_random_pool_is_deterministic() -> None:
    a, b = load_pretraining_pool("random:5", 16, seed=3), load_pretraining_pool("random:5", 16, seed=3)
    assert torch.equal(a.images, b.images) and a.images.shape == (5, 16, 16, 3)


def test_mixed_source_concatenates_object_centric_and_world_pools() -> None:
    from explorer.data.world import generate_pool
    from explorer.ssl.data import OBJECTS_SEED_OFFSET, load_heldout

    mixed = load_pretraining_pool("objects:3+world:2", 48, seed=5, workers=1)
    objects, world_part = load_pretraining_pool("objects:3", 48, seed=5, workers=1), load_pretraining_pool("world:2", 48, seed=5, workers=1)
    assert torch.equal(mixed.images, torch.cat([objects.images, world_part.images]))
    assert mixed.labels.tolist() == objects.labels.tolist() + world_part.labels.tolist()
    expected, _ = generate_pool(5 + OBJECTS_SEED_OFFSET, 3, size=48, workers=1, object_centric=True)
    assert np.array_equal(objects.images.numpy(), expected)
    # the k-NN monitor of a mixed or object-centric run holds out ordinary world scenes (the
    # distribution the backbone is evaluated on), identical to those of a world:N run
    bank, query = load_heldout("objects:3+world:2", 48, 2, 1, seed=5, workers=1)
    ref_bank, _ = load_heldout("world:9", 48, 2, 1, seed=5, workers=1)
    assert torch.equal(bank.images, ref_bank.images) and len(query) == 1
