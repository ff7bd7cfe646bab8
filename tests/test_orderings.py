import hashlib

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


@pytest.mark.parametrize("ordering, steps, pool, digest", [
    ("iid", 123, POOL, "913dfa3d3c93bc2a"), ("subset", 77, POOL[:300], "09663a5d50ef758f"),
    ("single", 123, POOL, "c1dde7cac2fa6cb2"), ("cumulative", 123, POOL, "92acdae48bd3dfa1"),
])
def test_the_batches_of_published_orderings_never_change(ordering, steps, pool, digest):
    """Pinned batches (the digests of the code before chunks got their own share of the steps): iid and
    subset runs are published under ids that promise these batches; single and cumulative with one chunk per
    epoch kept them too."""
    batches = np.concatenate(list(schedule(ordering, steps=steps, pool=pool).batches(seed=7)))
    assert hashlib.sha256(batches.astype(np.int64).tobytes()).hexdigest()[:16] == digest


def test_one_chunk_per_epoch_trains_epoch_e_on_chunk_e_only():
    s = schedule("single", steps=250, chunks=5)  # 5 epochs, 5 chunks of 200
    for e, seen in enumerate(epochs_of(s)):
        assert set(seen.tolist()) == set(POOL[e * 200 : (e + 1) * 200].tolist())  # cycled to fill the epoch


def test_more_chunks_than_epochs_stream_through_every_chunk_in_equal_shares():
    s = schedule("single", steps=100, chunks=10)  # 2 epochs of 50 steps, 10 chunks of 100 images
    batches = list(s.batches(seed=0))
    assert s.chunk_starts() == list(range(0, 101, 10))
    for c in range(10):
        seen = np.concatenate(batches[10 * c : 10 * (c + 1)])
        assert sorted(seen.tolist()) == sorted(POOL[c * 100 : (c + 1) * 100].tolist() * 2)  # two passes, never again
    uneven = schedule("cumulative", steps=58, chunks=5, batch=4)
    assert uneven.chunk_starts() == [0, 12, 23, 35, 46, 58]  # 58 steps in 5 shares, rounded to the nearest step
    batches = list(uneven.batches(seed=0))
    assert set(np.concatenate(batches[12:23]).tolist()) <= set(POOL[:400].tolist())  # share 1: chunks 0 and 1
    assert not set(np.concatenate(batches[:12]).tolist()) & set(POOL[200:].tolist())  # share 0: chunk 0 only


def test_the_hybrid_switch_lands_on_its_step_not_the_next_epoch():
    s = schedule("hybrid", steps=120)  # 3 epochs of 50 steps; switch at 0.4 x 120 = step 48
    batches = list(s.batches(seed=0))
    assert set(np.concatenate(batches[:48]).tolist()) <= set(POOL[:333].tolist())  # the first chunk only
    assert sorted(np.concatenate(batches[48:98]).tolist()) == sorted(POOL.tolist())  # then epochs of the pool


def test_cumulative_trains_chunk_es_share_on_chunks_up_to_e():
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
    full, resumed = list(s.batches(seed=3)), list(s.batches(seed=3, start_step=70))
    assert len(resumed) == 50 and all(np.array_equal(a, b) for a, b in zip(full[70:], resumed))


def test_chunks_that_cannot_train_are_refused():
    with pytest.raises(UserError, match="a chunk holds 10 images"):
        schedule("single", chunks=100)
    with pytest.raises(UserError, match="unknown ordering"):
        schedule("shuffled")
    with pytest.raises(UserError, match="7 steps cannot give each of 10 chunks a step"):
        schedule("hybrid", steps=7, chunks=10)
