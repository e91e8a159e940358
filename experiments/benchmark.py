r"""Benchmarks the compiled JD-BW iteration (1 generator step + d critic steps).

  python -m experiments.benchmark --batch_sizes=32,128 --d_steps=5

Reports compile time, steady-state seconds per iteration (median over --repeats after
one warm-up, with device synchronisation), images/s (both domains, all d + 1 batches),
XLA's FLOP count of the compiled iteration and the achieved FLOP/s.
"""

import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jdbw import jd

flags.DEFINE_list("batch_sizes", ["32", "128"], "Global batch sizes to measure.")
flags.DEFINE_integer("d_steps", 5, "Critic steps per generator step.")
flags.DEFINE_integer("repeats", 5, "Timed iterations per batch size (median reported).")
flags.DEFINE_string("output", None, "Optional JSON file for the results.")
FLAGS = flags.FLAGS


def measure(batch: int, d_steps: int, repeats: int) -> dict:
  method = jd.JD(jd.JDConfig(d_steps=d_steps))
  state = method.init_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = {k: jnp.asarray(rng.uniform(-1, 1, (d_steps + 1, batch, 32, 32, 1)), jnp.float32)
            for k in ("x", "y")}
  step = jax.jit(method.iteration, donate_argnums=0)
  t = time.perf_counter()
  compiled = step.lower(state, images).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  state, metrics, _ = compiled(state, images)  # Warm-up.
  jax.block_until_ready(metrics)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    state, metrics, _ = compiled(state, images)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  s_it = statistics.median(times)
  return {"batch": batch, "d_steps": d_steps, "compile_s": round(compile_s, 2),
          "s_per_iteration": round(s_it, 4), "images_per_s": round(2 * (d_steps + 1) * batch / s_it, 1),
          "xla_flops_per_iteration": flops, "achieved_gflops": round(flops / s_it / 1e9, 2)}


def main(argv):
  del argv
  info = {"device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
          "jax": jax.__version__, "cpu": platform.processor() or platform.machine()}
  print(json.dumps(info))
  results = []
  for b in FLAGS.batch_sizes:
    r = measure(int(b), FLAGS.d_steps, FLAGS.repeats)
    print(json.dumps(r), flush=True)
    results.append(r)
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"info": info, "results": results}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
