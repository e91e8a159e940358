"""One process of tests/test_multihost.py's step check (run as a script, not collected).

  python tests/multihost_worker.py OUT.json PROCESS_ID NUM_PROCESSES PORT

Every process supplies its slice of one fixed global batch, the shard_map iteration runs
over all processes' devices, and process 0 writes the metrics, the per-sample weights
and parameter checksums after each of two iterations to OUT.json. NUM_PROCESSES=1 is
the single-process reference on the same global batch.
"""

import json
import os
import sys

import jax
import numpy as np


def main(out, pid, nproc, port):
  if nproc > 1:
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=nproc,
                               process_id=pid)
  from jdbw import train
  from jdbw.methods import jd
  method = jd.JD(jd.JDConfig(g_features=4, d_features=2, w_features=2, d_steps=1))
  fn = train.compile_iteration(method, "shard_map")
  state = train.place_state(jax.jit(method.init_state)(jax.random.PRNGKey(0)), "shard_map")
  rng = np.random.default_rng(0)
  record = []
  for _ in range(2):
    batch = {k: rng.uniform(-1, 1, (2, 8, 32, 32, 1)).astype(np.float32) for k in ("x", "y")}
    per_host = 8 // nproc
    local = {k: v[:, pid * per_host:(pid + 1) * per_host] for k, v in batch.items()}
    state, metrics, per_sample = fn(state, train.place_batch(local, "shard_map"))
    per_sample, _ = train._gathered(per_sample, {}, "shard_map")
    params = train.local_state(state, "shard_map").params
    record.append({
        "metrics": {k: float(np.asarray(v)) for k, v in jax.device_get(
            train.local_state(metrics, "shard_map")).items()},
        "w_x": np.asarray(per_sample["w_x"]).reshape(-1).tolist(),
        "checksum": float(sum(np.abs(np.asarray(a, np.float64)).sum()
                              for a in jax.tree.leaves(params))),
        "devices": jax.device_count(), "local_devices": jax.local_device_count()})
  if pid == 0:
    with open(out, "w") as f:
      json.dump(record, f)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
