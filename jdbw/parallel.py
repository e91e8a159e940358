"""Data-parallel layouts over one named batch axis.

Every step is written once against the named axis `BATCH_AXIS`. Two wrappers run it:
`jit(shard_map(...))` over a 1-D device mesh (the default; global arrays sharded along
the batch) and `jax.pmap` (a leading local-device axis). Host batches from
`jdbw.data.make_batches` are turned into either layout here.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXIS = "batch"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (global) devices, axis named `BATCH_AXIS`."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_spec(batch_axis: int = 0) -> P:
  """PartitionSpec that shards dimension `batch_axis` over the mesh."""
  return P(*([None] * batch_axis), BATCH_AXIS)


def to_global(tree, mesh: Mesh, batch_axis: int = 0):
  """Host-local numpy batch -> global jax.Arrays sharded along `batch_axis`.

  On several hosts each contributes its own slice; the global batch is their
  concatenation in process order.
  """
  sharding = NamedSharding(mesh, batch_spec(batch_axis))
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def to_pmap(tree, batch_axis: int = 0, local_devices: int | None = None):
  """Host-local batch -> leading local-device axis: [..., B, ...] -> [n, ..., B/n, ...]."""
  n = jax.local_device_count() if local_devices is None else local_devices

  def split(x):
    x = np.asarray(x)
    b = x.shape[batch_axis]
    if b % n:
      raise ValueError(f"host batch {b} does not divide over {n} local devices")
    x = x.reshape(x.shape[:batch_axis] + (n, b // n) + x.shape[batch_axis + 1:])
    return np.moveaxis(x, batch_axis, 0)

  return jax.tree.map(split, tree)


# --- Collectives that also work without a named axis (single device, plain jit). ---
#
# Convention for data-parallel losses: every per-device loss is the *global* value
# (built with these collectives), and per-device gradients are averaged with
# `pmean`. Under pmap semantics (and shard_map with check_vma=False) psum transposes
# to psum, so pmean of the per-device gradients equals the single-device gradient of
# the same global loss, including terms that cross devices (global softmax, centring).


def psum(x, axis_name: str | None):
  return jax.lax.psum(x, axis_name) if axis_name else x


def pmean(x, axis_name: str | None):
  return jax.lax.pmean(x, axis_name) if axis_name else x


def all_gather(x, axis_name: str | None):
  """The global batch of a per-device array, in device order (tiled on axis 0)."""
  return jax.lax.all_gather(x, axis_name, tiled=True) if axis_name else x


def global_size(local: int, axis_name: str | None):
  """Global batch size from the local one."""
  return local * jax.lax.axis_size(axis_name) if axis_name else local
