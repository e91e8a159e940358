"""The discriminators' image history (jdbw.image_pool) against the reference's semantics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdbw import image_pool


def _numpy_pool(size, images, coins, slots, stored=None):
  """pytorch-CycleGAN-and-pix2pix `ImagePool.query`, with its random draws given."""
  stored = [] if stored is None else list(stored)
  if size == 0:   # the reference's pool_size 0: no buffer
    return stored, np.asarray(images)
  out = []
  for x, coin, slot in zip(images, coins, slots):
    if len(stored) < size:
      stored.append(x)
      out.append(x)
    elif coin > 0.5:
      out.append(stored[slot].copy())
      stored[slot] = x
    else:
      out.append(x)
  return stored, np.stack(out)


@pytest.mark.parametrize("size", [0, 1, 5])
def test_query_matches_the_reference_over_several_batches(size):
  rng = np.random.default_rng(0)
  pool = image_pool.init(size, (2, 2, 1))
  query = jax.jit(image_pool.query_with)
  ref_stored = []
  for batch in range(4):
    images = rng.normal(size=(3, 2, 2, 1)).astype(np.float32)
    coins = rng.uniform(size=3).astype(np.float32)
    slots = rng.integers(0, max(size, 1), 3).astype(np.int32)
    pool, shown = query(pool, images, coins, slots)
    ref_stored, ref_shown = _numpy_pool(size, images, coins, slots, ref_stored)
    np.testing.assert_array_equal(np.asarray(shown), ref_shown)
    assert int(pool.count) == len(ref_stored)
    if ref_stored:
      np.testing.assert_array_equal(np.asarray(pool.images)[:len(ref_stored)],
                                    np.stack(ref_stored))
  chex.assert_shape(pool.images, (size, 2, 2, 1))


def test_random_query_returns_history_half_the_time_once_full():
  pool = image_pool.init(50, (1,))
  query = jax.jit(image_pool.query)
  key = jax.random.PRNGKey(0)
  old = 0
  for step in range(60):   # images numbered by arrival: 0, 1, 2, ...
    key, sub = jax.random.split(key)
    images = jnp.arange(step * 10, step * 10 + 10, dtype=jnp.float32)[:, None]
    pool, shown = query(pool, images, sub)
    shown = np.asarray(shown)[:, 0]
    if step < 5:
      np.testing.assert_array_equal(shown, np.asarray(images)[:, 0])   # filling up
    else:
      # Every image shown is the new one or an older one: never a future or made-up one.
      assert np.all(shown <= np.asarray(images)[:, 0]) and np.all(shown == np.round(shown))
      old += int(np.sum(shown < np.asarray(images)[:, 0]))
  assert int(pool.count) == 50
  frac = old / (55 * 10)
  assert abs(frac - 0.5) < 4 * np.sqrt(0.25 / 550), frac


def test_negative_size_is_refused():
  with pytest.raises(ValueError, match="pool size"):
    image_pool.init(-1, (2,))
