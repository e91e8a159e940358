r"""Where the compiled JD-BW iteration spends its time on XLA:CPU, and matmul speeds.

  python benchmarks/profile_cpu.py --batch=32          # profile of the iteration
  python benchmarks/profile_cpu.py --matmuls           # plain matmul GFLOP/s by form

The profile traces two iterations with jax.profiler, sums the executor's thunk events
by kind, and joins each YNNPACK fusion ('ynn_fusion') with its dot or convolution in
the compiled HLO to get its FLOPs. Numbers quoted in docs/benchmarks.md come from here.
Not part of the package or the tests.
"""

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

from jdbw import xla_flags

xla_flags.apply()   # the project's XLA:CPU flags, as the entry points set them, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jdbw.methods import jd  # noqa: E402


def _dims(shape: str) -> list[int]:
  return [int(d) for d in re.match(r"\w+\[([\d,]*)\]", shape).group(1).split(",") if d]


def fusion_flops(hlo: str) -> dict[str, tuple[str, float]]:
  """{ynn fusion name: (kind, FLOPs)} from the compiled module's text."""
  bodies = {m.group(1): m.group(2) for m in re.finditer(
      r"^%(fused_computation[.\d]*) .*?\{\n(.*?)\n\}", hlo, re.S | re.M)}
  out = {}
  for m in re.finditer(r"%(ynn_fusion(?:\.\d+)?) = \S+ fusion\(.*?\), kind=kCustom, "
                       r"calls=%(\S+),", hlo):
    body = bodies.get(m.group(2), "")
    shapes = dict(re.findall(r"%(\S+) = (\w+\[[\d,]*\])", body))
    operands = lambda ops: [_dims(shapes[o.strip().lstrip("%")]) for o in ops.split(",")]
    dot = re.search(r"= (\S+) dot\(([^)]*)\),.*?lhs_contracting_dims=\{([\d,]*)\}.*?"
                    r"rhs_contracting_dims=\{([\d,]*)\}", body)
    conv = re.search(r"= (\S+) convolution\(([^)]*)\), window=\{size=([\dx]+)[^}]*\}, "
                     r"dim_labels=(\w+)_", body)
    if dot:
      lhs = operands(dot.group(2))[0]
      contract = [int(c) for c in dot.group(3).split(",")]
      k = np.prod([lhs[c] for c in contract])
      canonical = contract == [len(lhs) - 1] and dot.group(4) == "0"
      kind = "matmul" if canonical else "matmul, a transposed operand"
      out[m.group(1)] = (kind, 2.0 * k * np.prod(_dims(dot.group(1))))
    elif conv:
      lhs = operands(conv.group(2))[0]
      window = [int(w) for w in conv.group(3).split("x")]
      k = lhs[conv.group(4).index("f")] * np.prod(window)
      kind = "conv, window <= 7" if max(window) <= 7 else "conv, large window (weight grad)"
      out[m.group(1)] = (kind, 2.0 * k * np.prod(_dims(conv.group(1))))
    else:
      out[m.group(1)] = ("other", 0.0)
  return out


def profile(batch: int, d_steps: int, iterations: int = 2):
  method = jd.JD(jd.JDConfig(d_steps=d_steps))
  state = method.init_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = {k: jnp.asarray(rng.uniform(-1, 1, (1 + d_steps, batch, 32, 32, 1)), jnp.float32)
            for k in ("x", "y")}
  compiled = jax.jit(method.iteration, donate_argnums=0).lower(state, images).compile()
  flops = fusion_flops(compiled.as_text())
  for _ in range(2):
    state, metrics, _ = compiled(state, images)
  jax.block_until_ready(metrics)
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      t = time.perf_counter()
      for _ in range(iterations):
        state, metrics, _ = compiled(state, images)
        jax.block_until_ready(metrics)
      wall = (time.perf_counter() - t) / iterations
    path = glob.glob(f"{d}/**/perfetto_trace.json.gz", recursive=True)[0]
    trace = json.load(gzip.open(path))
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  by_kind, by_thread = collections.defaultdict(lambda: [0.0, 0.0]), collections.Counter()
  skip = ("ThunkExecutor", "$", "PjitFunction", "SlinkyThreadPool", "CommonPjRt")
  for e in events:
    if e.get("ph") != "X" or e["name"].startswith(skip):
      continue
    us = e.get("dur", 0) / iterations
    by_thread[e.get("tid")] += us
    kind, f = flops.get(e["name"], (re.sub(r"\.\d+$", "", e["name"]), 0.0))
    by_kind[kind][0] += us
    by_kind[kind][1] += f / iterations
  busy = sum(v for v in by_thread.values())
  print(f"batch {batch}, d = {d_steps}: {wall:.2f} s per iteration (under the profiler);"
        f" busy thread time {busy / 1e6:.2f} s on {len(by_thread)} threads:"
        f" {', '.join(f'{v / 1e6:.2f}' for v in sorted(by_thread.values(), reverse=True)[:4])}")
  for kind, (us, f) in sorted(by_kind.items(), key=lambda kv: -kv[1][0])[:20]:
    rate = f"{f / us / 1e3:6.0f} GFLOP/s per thread" if f else ""
    print(f"{us / 1e3:9.1f} ms {100 * us / busy:5.1f} %  {kind:40s} {rate}")


def _best(fn, *args, repeats=10) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return min(times)


def matmuls():
  """GFLOP/s of [M, K] @ [K, N] and of the two forms its gradients take."""
  r = np.random.default_rng(0)
  for m, k, n in [(4096, 1024, 2048), (8192, 128, 64), (2048, 4096, 128), (2048, 4096, 256)]:
    gflop = 2 * m * k * n / 1e9
    row = []
    for dt, pref in ((jnp.float32, None), (jnp.bfloat16, None), (jnp.bfloat16, jnp.float32)):
      a, w = (jnp.asarray(r.uniform(size=s), dt) for s in ((m, k), (k, n)))
      g = jnp.asarray(r.uniform(size=(m, n)), dt)
      fwd = jax.jit(lambda a, w: jnp.dot(a, w, preferred_element_type=pref))
      wgrad = jax.jit(lambda a, g: jnp.dot(a.T, g, preferred_element_type=pref))
      dgrad = jax.jit(lambda g, w: jnp.dot(g, w.T, preferred_element_type=pref))
      name = jnp.dtype(dt).name + ("->f32" if pref else "")
      row.append(f"{name}: a@w {gflop / _best(fwd, a, w):4.0f}, a.T@g "
                 f"{gflop / _best(wgrad, a, g):4.0f}, g@w.T {gflop / _best(dgrad, g, w):4.0f}")
    print(f"[{m},{k}]@[{k},{n}] GFLOP/s  " + " | ".join(row))


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--d_steps", type=int, default=5)
  parser.add_argument("--matmuls", action="store_true")
  args = parser.parse_args()
  if args.matmuls:
    matmuls()
  else:
    profile(args.batch, args.d_steps)
