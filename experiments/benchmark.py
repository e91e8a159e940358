r"""Benchmarks the compiled training iteration of JD-BW, MUNIT, CycleGAN and DistanceGAN.

  python -m experiments.benchmark                       # JD-BW b32/b128 d=5, MUNIT b32
  python -m experiments.benchmark --compare_torch       # + eager PyTorch, same networks
  python -m experiments.benchmark --models=jd_bw --batch_sizes=128 --conv_impl=xla
  python -m experiments.benchmark --models=jd_bw_128    # 128x128, batch 6, d=2 (§4.4)

Per (model, batch): compile time; steady-state seconds per iteration (median of
--repeats timed calls after --warmup, each synchronised with block_until_ready);
images/s (both domains, all 1 + d batches); the analytic FLOPs of the iteration
(jdbw.flops: every conv and matmul of forward, backward and the penalty's double
backward, counted from shapes) with the share of the critic steps and per network;
XLA's own cost-analysis FLOPs as a cross-check; achieved FLOP/s, and on a GPU its
fraction of --peak_tflops; memory of the compiled iteration (arguments + outputs +
temporaries, and on GPU the allocator's peak). `--input_pipeline` also times the
host data pipeline alone (batches of one iteration per second). Networks are the
paper-size defaults of JDConfig / MUNITConfig (jd.PAPER_128 for jd_bw_128); inputs
are uniform noise in [-1, 1].
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import common
from jdbw import data, flops, methods
from jdbw.nets import layers
from jdbw.methods import jd

# Timed configurations: registry methods at the paper's sizes.
MODELS = {
    "jd_bw": lambda d, impl, dt: methods.build("jd", d_steps=d, conv_impl=impl, compute_dtype=dt),
    # §4.4's 128x128 setting (d = 2 of its own, RGB, d_z = 16); uniform-noise inputs.
    "jd_bw_128": lambda d, impl, dt: methods.build("jd", **jd.PAPER_128, conv_impl=impl,
                                                   compute_dtype=dt),
    "munit": lambda d, impl, dt: methods.build("munit", conv_impl=impl, compute_dtype=dt),
    "munit_bw": lambda d, impl, dt: methods.build("munit", batch_weight="two_sided",
                                                  conv_impl=impl, compute_dtype=dt),
    # The seed papers' baselines at their 32x32 defaults (docs/paper_map.md).
    "cyclegan": lambda d, impl, dt: methods.build("cyclegan", conv_impl=impl, compute_dtype=dt),
    "cyclegan_bw": lambda d, impl, dt: methods.build("cyclegan", batch_weight="two_sided",
                                                     conv_impl=impl, compute_dtype=dt),
    "distancegan": lambda d, impl, dt: methods.build("distancegan", conv_impl=impl,
                                                     compute_dtype=dt),
    "distancegan_bw": lambda d, impl, dt: methods.build("distancegan", batch_weight="two_sided",
                                                        conv_impl=impl, compute_dtype=dt),
    # BalaGAN at the CPU study's widths (mass_shift_cpu.flags: the MUNIT sizes).
    "balagan_study": lambda d, impl, dt: methods.build(
        "balagan", gen_dim=8, dis_dim=8, noise_dim=8, clusters=10, d_steps=1, conv_impl=impl,
        compute_dtype=dt),
}

flags.DEFINE_list("models", ["jd_bw", "munit"], f"Models to time, of {sorted(MODELS)}.")
flags.DEFINE_list("batch_sizes", ["32", "128"], "Global batch sizes for JD-BW.")
flags.DEFINE_list("munit_batch_sizes", ["32"], "Global batch sizes for MUNIT, CycleGAN and"
                  " DistanceGAN (each +BW).")
flags.DEFINE_list("batch_sizes_128", ["6"], "Global batch sizes for jd_bw_128 (paper: 6).")
flags.DEFINE_integer("d_steps", 5, "JD-BW (32x32) critic steps per generator step; the other"
                     " models keep their own (jd_bw_128 2, the rest 1).")
flags.DEFINE_integer("warmup", 2, "Untimed iterations after compilation.")
flags.DEFINE_integer("repeats", 20, "Timed iterations (the median is reported).")
flags.DEFINE_enum("conv_impl", "auto", list(layers.CONV_IMPLS), "Convolution kernels.")
flags.DEFINE_enum("compute_dtype", "float32", list(layers.COMPUTE_DTYPES), "Compute dtype.")
flags.DEFINE_float("peak_tflops", None,
                   "Device peak (dense TF32 / bf16 TFLOP/s) for the fraction-of-peak column;"
                   " default: known GPUs' dense TF32 peak, none on CPU.")
flags.DEFINE_bool("input_pipeline", False,
                  "Also time the host input pipeline alone (--pipeline_source, SR transform).")
flags.DEFINE_string("pipeline_source", "idx:/usr/share/datasets/fashion-mnist",
                    "Source of the pipeline timing (the mass-shift CPU benchmark's data).")
flags.DEFINE_bool("compare_torch", False,
                  "Also run benchmarks/torch_jd.py (eager PyTorch, same JD-BW networks) with"
                  " the same batch sizes, and report the speed ratio.")
flags.DEFINE_string("output", None, "Optional JSON file for all results.")
FLAGS = flags.FLAGS

# Dense TF32 tensor-core peak (no sparsity), TFLOP/s, from the vendors' data sheets.
_PEAK_TF32 = {"H100": 494.7, "H200": 494.7, "A100": 156.0, "L4": 60.0}


def _peak_tflops():
  if FLAGS.peak_tflops:
    return FLAGS.peak_tflops
  kind = jax.devices()[0].device_kind
  return next((v for k, v in _PEAK_TF32.items() if k in kind), None)


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {k: int(getattr(m, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "temp")}
  out["total_mib"] = round(sum(out.values()) / 2 ** 20, 1)
  return out


def _image_shapes(method, batch):
  """{'x', 'y'}: shapes of one iteration's stacked batches."""
  c, n = method.config, method.batches_per_iteration
  return {k: (n, batch, c.resolution, c.resolution, getattr(c, f"channels_{k}"))
          for k in ("x", "y")}


def _count_flops(name, batch, d_steps, dtype):
  """Analytic count on the model traced with XLA convolutions (see jdbw.flops)."""
  method = MODELS[name](d_steps, "xla", dtype)
  method.unroll_d_steps = False   # critic steps in a scan: jdbw.flops tags them 'scan'
  state = jax.eval_shape(method.init_state, jax.random.PRNGKey(0))
  images = {k: jax.ShapeDtypeStruct(shape, jnp.float32)
            for k, shape in _image_shapes(method, batch).items()}
  counts = flops.count(method.iteration, state, images)
  total = flops.total(counts)
  critic = sum(v for (tag, _), v in counts.items() if tag == "scan")
  return total, critic / total, {k: round(v / total, 3) for k, v in
                                 flops.by_network(counts).items()}


def measure(name: str, batch: int, d_steps: int) -> dict:
  method = MODELS[name](d_steps, FLAGS.conv_impl, FLAGS.compute_dtype)
  state = method.init_state(jax.random.PRNGKey(0))
  n = method.batches_per_iteration
  rng = np.random.default_rng(0)
  images = {k: jnp.asarray(rng.uniform(-1, 1, shape), jnp.float32)
            for k, shape in _image_shapes(method, batch).items()}
  step = jax.jit(method.iteration, donate_argnums=0)
  t = time.perf_counter()
  compiled = step.lower(state, images).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  for _ in range(FLAGS.warmup):
    state, metrics, _ = compiled(state, images)
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(FLAGS.repeats):
    t = time.perf_counter()
    state, metrics, _ = compiled(state, images)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  s_it = statistics.median(times)
  analytic, critic_share, per_net = _count_flops(name, batch, d_steps, FLAGS.compute_dtype)
  result = {
      "model": name, "batch": batch, "d_steps": method.config.d_steps,
      "conv_impl": FLAGS.conv_impl, "compute_dtype": FLAGS.compute_dtype,
      "compile_s": round(compile_s, 1), "s_per_iteration": round(s_it, 4),
      "s_per_iteration_min": round(min(times), 4), "repeats": len(times),
      "images_per_s": round(2 * n * batch / s_it, 1),
      "analytic_gflop_per_iteration": round(analytic / 1e9, 2),
      "analytic_gflop_per_sample": round(analytic / 1e9 / batch, 2),
      "critic_steps_share": round(critic_share, 3), "flops_by_network": per_net,
      "xla_gflop_per_iteration": round(xla_flops / 1e9, 2),
      "achieved_gflops": round(analytic / s_it / 1e9, 1),
      "memory": _memory(compiled),
  }
  peak = _peak_tflops()
  if peak:
    result["fraction_of_peak"] = round(analytic / s_it / (peak * 1e12), 4)
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    result["memory"]["device_peak_mib"] = round(stats["peak_bytes_in_use"] / 2 ** 20, 1)
  return result


def input_pipeline(batch: int, d_steps: int, seconds: float = 20.0) -> dict:
  """Host pipeline alone: iterations' worth of batches (1 + d per domain) per second."""
  specs = {"x": data.DomainSpec(source=FLAGS.pipeline_source, name="x"),
           "y": data.DomainSpec(source=FLAGS.pipeline_source, classes="0:0.5",
                                transform="sr", name="y")}
  domains = {k: data.load_domain(s) for k, s in specs.items()}
  it = data.make_batches(domains, batch, seed=0, stack=(1 + d_steps,), device_count=1)
  for _ in range(3):
    next(it)
  n, t = 0, time.perf_counter()
  while time.perf_counter() - t < seconds:
    next(it)
    n += 1
  rate = n / (time.perf_counter() - t)
  return {"input_pipeline": FLAGS.pipeline_source, "batch": batch, "d_steps": d_steps,
          "iterations_per_s": round(rate, 2),
          "images_per_s": round(rate * 2 * (1 + d_steps) * batch, 1)}


def torch_reference(batches, d_steps) -> list[dict]:
  script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "torch_jd.py")
  out = subprocess.run([sys.executable, script, f"--batch_sizes={','.join(batches)}",
                        f"--d_steps={d_steps}", f"--repeats={FLAGS.repeats}"],
                       capture_output=True, text=True, check=False)
  if out.returncode:
    raise SystemExit(f"--compare_torch: {script} failed (pip install -r"
                     f" benchmarks/requirements.txt?):\n{out.stderr[-2000:]}")
  return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  unknown = sorted(set(FLAGS.models) - set(MODELS))
  if unknown:
    raise app.UsageError(f"--models: unknown {unknown}; expected some of {sorted(MODELS)}")
  info = {"date": time.strftime("%Y-%m-%d"), "device": str(jax.devices()[0].device_kind),
          "platform": jax.default_backend(), "devices": jax.device_count(),
          "jax": jax.__version__, "machine": platform.machine(),
          "cpu_count": os.cpu_count(), "argv": sys.argv}
  print(json.dumps(info), flush=True)
  results = []
  for name in FLAGS.models:
    sizes = {"jd_bw": FLAGS.batch_sizes, "jd_bw_128": FLAGS.batch_sizes_128}.get(
        name, FLAGS.munit_batch_sizes)
    for b in sizes:
      r = measure(name, int(b), FLAGS.d_steps)
      print(json.dumps(r), flush=True)
      results.append(r)
  if FLAGS.input_pipeline:
    for b in FLAGS.batch_sizes:
      r = input_pipeline(int(b), FLAGS.d_steps)
      print(json.dumps(r), flush=True)
      results.append(r)
  if FLAGS.compare_torch and "jd_bw" in FLAGS.models:
    for ref in torch_reference(FLAGS.batch_sizes, FLAGS.d_steps):
      if "batch" not in ref:
        info["torch"] = ref
        continue
      ours = next(r for r in results if r.get("model") == "jd_bw" and r["batch"] == ref["batch"])
      ref["speedup_of_jax"] = round(ref["s_per_iteration"] / ours["s_per_iteration"], 2)
      print(json.dumps(ref), flush=True)
      results.append(ref)
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"info": info, "results": results}, f, indent=2)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
