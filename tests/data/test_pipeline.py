import numpy as np
import pytest
import torch

from swapout.data.pipeline import TrainLoader, eval_batches

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _data(n=96):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def _loader(**kw):
    images, labels = _data()
    args = dict(batch_size=16, mean=MEAN, std=STD, device="cpu", seed=3)
    args.update(kw)
    return TrainLoader(images, labels, **args)


def _normalised(images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_epoch_is_deterministic_and_differs_between_epochs():
    a = list(_loader().batches(0))
    b = list(_loader().batches(0))
    c = list(_loader().batches(1))
    assert len(a) == 6
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])


def test_resume_mid_epoch_gives_the_same_batches():
    full = list(_loader().batches(2))
    tail = list(_loader().batches(2, start=4))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(full[4:], tail))


def test_one_crop_per_batch_and_per_image_flips():
    images, labels = _data()
    loader = _loader(pad=4)
    reference = _normalised(images)
    order, flips, crops = loader._epoch_plan(0)
    seen_flips = set()
    for step, (x, y) in enumerate(loader.batches(0)):
        dy, dx = crops[step].tolist()
        idx = order[step * 16:(step + 1) * 16]
        flip = flips[step * 16:(step + 1) * 16].view(-1, 1, 1, 1)
        expected = torch.where(flip, reference[idx].flip(3), reference[idx])
        expected = torch.nn.functional.pad(expected, (4, 4, 4, 4))[:, :, dy:dy + 32, dx:dx + 32]
        torch.testing.assert_close(x, expected)
        assert torch.equal(y, torch.as_tensor(labels)[idx])
        seen_flips.update(flips[step * 16:(step + 1) * 16].tolist())
    assert seen_flips == {True, False}
    assert len({tuple(c) for c in crops.tolist()}) > 1


def test_per_image_crops():
    images, _ = _data()
    loader = _loader(crop="image")
    order, flips, crops = loader._epoch_plan(0)
    x, _ = next(loader.batches(0))
    reference = _normalised(images)
    for i in range(16):
        dy, dx = crops[i].tolist()
        img = reference[order[i]].flip(2) if flips[i] else reference[order[i]]
        torch.testing.assert_close(x[i], torch.nn.functional.pad(img, (4, 4, 4, 4))[:, dy:dy + 32, dx:dx + 32])


def test_ranks_take_disjoint_slices_of_each_global_batch_with_the_same_crop():
    single = list(_loader().batches(0))
    ranks = [list(_loader(rank=r, world_size=4).batches(0)) for r in range(4)]
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([ranks[r][step][0] for r in range(4)]), x)
        assert torch.equal(torch.cat([ranks[r][step][1] for r in range(4)]), y)


def test_eval_batches_are_in_order_and_unaugmented():
    images, labels = _data()
    xs = [x for x, _ in eval_batches(images, labels, MEAN, STD, "cpu", batch_size=40)]
    assert [len(x) for x in xs] == [40, 40, 16]
    torch.testing.assert_close(torch.cat(xs), _normalised(images))


@pytest.mark.parametrize("kw", [dict(crop="pixel"), dict(batch_size=0), dict(batch_size=1000), dict(world_size=5)])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        _loader(**kw)
