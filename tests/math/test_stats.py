"""Streaming statistics: exact quantiles equal numpy's, the sketch stays within its rank error,
and every accumulator merged over shards equals one pass."""

import numpy as np
import pytest
import torch

from netdissect.math.stats import SKETCH_RANK_ERROR, QuantileSketch, TopImages, TopKQuantile, topk_needed


def stream(acc, data, batch):
    for i in range(0, data.shape[1], batch):
        acc.add(data[:, i : i + batch])
    return acc


@pytest.mark.parametrize("level", [0.995, 994 / 999, 0.5, 0.9, 0.0, 1.0])
@pytest.mark.parametrize("n", [1, 7, 1000, 12345])
def test_exact_quantile_equals_numpy(level, n):
    gen = torch.Generator().manual_seed(n)
    data = torch.randn(5, n, generator=gen)
    data[0] = data[0].round()  # many ties
    acc = stream(TopKQuantile(5, topk_needed(n, level)), data, 97)
    expected = np.quantile(data.double().numpy(), level, axis=1)
    np.testing.assert_allclose(acc.quantile(level).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_exact_quantile_keeps_only_k_values():
    acc = stream(TopKQuantile(3, 50), torch.rand(3, 10_000), 1000)
    assert acc.values.shape == (3, 50)
    assert acc._pending_size < 3 * 50  # candidates are folded in once they outnumber the kept values
    with pytest.raises(ValueError, match="needed"):
        acc.quantile(0.5)  # needs 5000 values


def test_maps_input_equals_value_input():
    """add_maps (batches of activation maps, reading only maps above the floor) == add."""
    gen = torch.Generator().manual_seed(5)
    maps = torch.randn(40, 3, 6, 5, generator=gen)
    maps[:, 1] = maps[:, 1].round()  # ties
    n = 40 * 30
    k = topk_needed(n, 0.99)
    by_values, by_maps = TopKQuantile(3, k), TopKQuantile(3, k)
    for i in range(0, 40, 7):
        by_values.add(maps[i : i + 7].transpose(0, 1).reshape(3, -1))
        by_maps.add_maps(maps[i : i + 7])
    assert by_maps.count == by_values.count == n
    assert torch.equal(by_maps.quantile(0.99), by_values.quantile(0.99))
    expected = np.quantile(maps.transpose(0, 1).reshape(3, -1).double().numpy(), 0.99, axis=1)
    np.testing.assert_allclose(by_maps.quantile(0.99).numpy(), expected, rtol=1e-6)


def test_exact_shards_merge_to_one_pass():
    data = torch.randn(4, 5003)
    k = topk_needed(5003, 0.995)
    whole = stream(TopKQuantile(4, k), data, 500)
    a = stream(TopKQuantile(4, k), data[:, :2001], 300)
    b = stream(TopKQuantile(4, k), data[:, 2001:], 700)
    a.merge(b)
    assert a.count == whole.count
    assert torch.equal(a.quantile(0.995), whole.quantile(0.995))


def rank_error(data: torch.Tensor, q: torch.Tensor, level: float) -> float:
    n = data.shape[1]
    below = (data < q[:, None]).sum(1).double() / n
    upto = (data <= q[:, None]).sum(1).double() / n
    err = torch.clamp(below - level, min=0) + torch.clamp(level - upto, min=0)
    return err.max().item()


@pytest.mark.parametrize("dist", ["normal", "relu", "exponential"])
def test_sketch_rank_error_within_bound(dist):
    gen = torch.Generator().manual_seed(3)
    n = 1_500_000
    data = torch.randn(2, n, generator=gen)
    if dist == "relu":
        data = data.clamp(min=0)  # half the values tie at 0
    elif dist == "exponential":
        data = data.exp()
    sketch = stream(QuantileSketch(2, seed=1), data, 50_000)
    assert sum(lv.shape[1] for lv in sketch.levels) < 4 * 65536  # bounded, far below n
    for level in (0.995, 0.99, 0.5):
        assert rank_error(data, sketch.quantile(level), level) <= SKETCH_RANK_ERROR


def test_sketch_shards_merge_within_bound():
    data = torch.randn(2, 600_000)
    a = stream(QuantileSketch(2, seed=1), data[:, :250_000], 25_000)
    b = stream(QuantileSketch(2, seed=2), data[:, 250_000:], 40_000)
    a.merge(b)
    assert a.count == 600_000
    assert rank_error(data, a.quantile(0.995), 0.995) <= SKETCH_RANK_ERROR


def test_sketch_small_k_error_grows_but_memory_shrinks():
    data = torch.rand(1, 200_000)
    small = stream(QuantileSketch(1, k=64, seed=0), data, 10_000)
    assert sum(lv.shape[1] for lv in small.levels) < 400
    assert rank_error(data, small.quantile(0.9), 0.9) < 0.1


def test_top_images_ties_break_by_index_and_merge():
    maxima = torch.tensor([[1.0, 5.0], [3.0, 5.0], [3.0, 0.0], [2.0, 5.0]])  # (images, units)
    idx = torch.arange(4)
    whole = TopImages(2, 2)
    whole.add(maxima, idx)
    assert whole.indices.tolist() == [[1, 2], [0, 1]]
    a, b = TopImages(2, 2), TopImages(2, 2)
    b.add(maxima[2:], idx[2:])
    a.add(maxima[:2], idx[:2])
    b.merge(a)
    assert torch.equal(b.indices, whole.indices) and torch.equal(b.values, whole.values)


def test_state_dict_round_trip():
    data = torch.randn(2, 3000)
    s = stream(QuantileSketch(2, k=128, seed=0), data, 500)
    t = QuantileSketch(2, k=128, seed=9)
    t.load_state_dict(s.state_dict())
    more = torch.randn(2, 1000)
    s.add(more)
    t.add(more)
    assert torch.equal(s.quantile(0.9), t.quantile(0.9))
