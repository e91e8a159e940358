"""The discriminators' history of generated images (Shrivastava et al. 2017; CycleGAN's
`ImagePool`, 50 images) as pure functions of an explicit state: it lives in the train
state, so it is checkpointed (a resumed run continues with the same history) and runs
inside a jitted step.

Semantics of the reference (`util/image_pool.py` of pytorch-CycleGAN-and-pix2pix), image
by image in batch order:
  - while the pool holds fewer than `size` images, the image is stored and returned;
  - once it is full, with probability 1/2 a uniformly chosen stored image is returned and
    the new one takes its place, otherwise the new image is returned and nothing stored.
`size = 0` turns the pool off (every image is returned as it is).

  pool = image_pool.init(50, (32, 32, 1))
  pool, shown = image_pool.query(pool, fakes, rng)   # shown: what the critic scores
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PoolState(NamedTuple):
  images: jax.Array   # [size, *example_shape]
  count: jax.Array    # int32 []: images stored so far (at most size)


def init(size: int, example_shape, dtype=jnp.float32) -> PoolState:
  if size < 0:
    raise ValueError(f"pool size {size}: expected >= 0")
  return PoolState(jnp.zeros((size, *example_shape), dtype), jnp.zeros((), jnp.int32))


def draws(rng, n: int, size: int):
  """The random choices of one query of `n` images: a coin in [0, 1) and a slot in
  [0, size) per image (the reference's `random.uniform(0, 1) > 0.5` and
  `random.randint(0, size - 1)`)."""
  k_coin, k_slot = jax.random.split(rng)
  return (jax.random.uniform(k_coin, (n,)),
          jax.random.randint(k_slot, (n,), 0, max(size, 1)))


def query_with(pool: PoolState, images, coins, slots):
  """`query` with its random choices given (tests compare it with a reference)."""
  size = pool.images.shape[0]
  if size == 0:
    return pool, images

  def one(carry, inp):
    stored, count = carry
    x, coin, slot = inp
    full = count >= size
    swap = full & (coin > 0.5)
    where = jnp.where(full, slot, count)
    old = jax.lax.dynamic_index_in_dim(stored, where, keepdims=False)
    keep = jnp.where(full & ~swap, stored,
                     jax.lax.dynamic_update_index_in_dim(stored, x, where, 0))
    return (keep, jnp.minimum(count + 1, size)), jnp.where(swap, old, x)

  (stored, count), shown = jax.lax.scan(one, (pool.images, pool.count),
                                        (images, coins, slots))
  return PoolState(stored, count), shown


def query(pool: PoolState, images, rng):
  """(new pool, images the discriminator sees) for a batch `images` [n, ...]."""
  coins, slots = draws(rng, images.shape[0], pool.images.shape[0])
  return query_with(pool, images, coins, slots)
