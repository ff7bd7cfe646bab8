import numpy as np
import pytest

from ssl_src.errors import UserError
from ssl_src.orderings import ORDERINGS, Schedule

POOL = np.random.default_rng(0).permutation(1000)


def schedule(ordering, steps=50, batch=20, chunks=0, pool=POOL, full=1000):
    s = Schedule(pool, full, batch, steps, ordering, chunks)
    s.validate()
    return s


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_every_ordering_takes_exactly_the_step_budget(ordering):
    s = schedule(ordering, steps=123)
    batches = list(s.batches(seed=0))
    assert len(batches) == 123 and all(len(b) == 20 for b in batches)
    assert s.steps_per_epoch == 50 and s.epochs == 3


def epochs_of(s):
    batches = list(s.batches(seed=0))
    return [np.concatenate(batches[e * s.steps_per_epoch : (e + 1) * s.steps_per_epoch]) for e in range(s.epochs)]


def test_iid_epoch_is_one_pass_over_the_pool():
    (first,) = epochs_of(schedule("iid", steps=50))
    assert sorted(first.tolist()) == sorted(POOL.tolist())  # 50 x 20 = every image exactly once


def test_single_pass_trains_epoch_e_on_chunk_e_only():
    s = schedule("single", steps=250, chunks=5)  # 5 epochs, 5 chunks of 200
    for e, seen in enumerate(epochs_of(s)):
        assert set(seen.tolist()) == set(POOL[e * 200 : (e + 1) * 200].tolist())  # cycled to fill the epoch


def test_cumulative_trains_epoch_e_on_chunks_up_to_e():
    s = schedule("cumulative", steps=250, chunks=5)
    for e, seen in enumerate(epochs_of(s)):
        assert set(seen.tolist()) <= set(POOL[: (e + 1) * 200].tolist())
        assert set(POOL[e * 200 : (e + 1) * 200].tolist()) <= set(seen.tolist())


def test_hybrid_is_single_pass_for_40_percent_then_iid():
    s = schedule("hybrid", steps=500, chunks=10)  # 10 epochs: 4 single-pass, then 6 over everything
    epochs = epochs_of(s)
    for e in range(4):
        assert set(epochs[e].tolist()) == set(POOL[e * 100 : (e + 1) * 100].tolist())
    for e in range(4, 10):
        assert sorted(epochs[e].tolist()) == sorted(POOL.tolist())


def test_subset_ordering_uses_its_pool_with_the_full_epoch_length():
    s = schedule("subset", steps=100, pool=POOL[:100], full=1000)
    assert s.steps_per_epoch == 50
    assert set(np.concatenate(list(s.batches(0))).tolist()) == set(POOL[:100].tolist())


def test_resuming_mid_schedule_yields_the_same_batches():
    s = schedule("hybrid", steps=120, chunks=3)
    full = list(s.batches(seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(full[70:], s.batches(seed=3, start_step=70)))


def test_chunks_smaller_than_a_batch_are_refused():
    with pytest.raises(UserError, match="a chunk holds 10 images"):
        schedule("single", chunks=100)
    with pytest.raises(UserError, match="unknown ordering"):
        schedule("shuffled")
