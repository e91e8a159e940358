"""Numerics pinned across refactors: a few iterations of every benchmark variant against
values recorded from the code before the method/batch-weight layout changed.

The recorded file holds, per variant, the parameter tree (paths and shapes, which old
checkpoints must keep), the metrics of each iteration and per-part parameter checksums
after the last. Regenerate only for an intended change of numerics, saying why in the
commit: JDBW_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

import json
import os

import jax
import numpy as np
import pytest

from jdbw.methods import (balagan, bicyclegan, cyclegan, distancegan, dtn, irwgan, jd, munit,
                          pix2pix, xgan)

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "golden_numerics.json")
ITERATIONS = 3
# Float reassociation (another XLA version, CPU, or optimisation level: the test suite
# compiles with LLVM at -O0, see conftest.py) moves these values by up to ~1e-3 relative;
# a changed loss, sign, schedule or initialisation moves them by far more.
RTOL = 2e-3
# Metrics near 0 get an absolute floor. BalaGAN's is larger: RMSprop's first steps
# (second moments from zero, eps outside the root) move each parameter by about lr
# whatever its gradient's size, so float noise on a near-zero gradient becomes a whole
# step, and a metric that is the mean of cancelling terms of order 1 (its g/adv, -0.03)
# inherits it: 9.4e-5 after one iteration and 3.1e-4 after two between an "AMD EPYC"
# and an "Intel Xeon" 2-core machine (2026-12-07); every other metric within RTOL.
ATOL = {"balagan": 1e-3}
# The tiny settings of test_train / test_munit, with the same batch shapes: their
# compiled iterations come out of the session's persistent compilation cache here.
JD_TINY = dict(g_features=4, d_features=2, w_features=2, d_steps=2)
MUNIT_TINY = dict(gen_dim=4, mlp_dim=8, dis_dim=4, w_features=2)
# test_cyclegan's tiny settings; a 3-image pool, so the pool's draws take part by iteration 2.
CG_TINY = dict(ngf=4, ndf=4, n_blocks=1, w_features=2, pool_size=3)
DG_TINY = dict(g_dim=4, d_dim=4, w_features=2, distance_batches=3)
P2P_TINY = dict(ngf=4, ndf=4, reverse=True)   # test_paired's; both directions pinned
BC_TINY = dict(ngf=4, ndf=4, nef=4, reverse=True)
DTN_TINY = dict(g_dim=4, d_dim=4, f_dim=4, embed_dim=8, w_features=2)   # test_semantic's
XGAN_TINY = dict(g_dim=4, d_dim=4, e_dim=4, embed_dim=8, dann_dim=8, w_features=2)
VARIANTS = {
    "jd_bw": lambda: jd.JD(jd.JDConfig(**JD_TINY, batch_weight="two_sided",
                                       weight_norm="softmax")),
    "jd": lambda: jd.JD(jd.JDConfig(**JD_TINY, batch_weight="none")),
    "one_sided": lambda: jd.JD(jd.JDConfig(**JD_TINY, batch_weight="one_sided")),
    "munit": lambda: munit.MUNIT(munit.MUNITConfig(**MUNIT_TINY, batch_weight="none")),
    "munit_bw": lambda: munit.MUNIT(munit.MUNITConfig(**MUNIT_TINY, batch_weight="two_sided")),
    "cyclegan": lambda: cyclegan.CycleGAN(cyclegan.CycleGANConfig(**CG_TINY)),
    "cyclegan_bw": lambda: cyclegan.CycleGAN(cyclegan.CycleGANConfig(
        **CG_TINY, batch_weight="two_sided")),
    "distancegan": lambda: distancegan.DistanceGAN(distancegan.DistanceGANConfig(**DG_TINY)),
    "distancegan_bw": lambda: distancegan.DistanceGAN(distancegan.DistanceGANConfig(
        **DG_TINY, batch_weight="two_sided")),
    "pix2pix": lambda: pix2pix.Pix2Pix(pix2pix.Pix2PixConfig(**P2P_TINY)),
    "bicyclegan": lambda: bicyclegan.BiCycleGAN(bicyclegan.BiCycleGANConfig(**BC_TINY)),
    # f as initialised (the golden pins the steps; fitting f is test_semantic's).
    "dtn": lambda: dtn.DTN(dtn.DTNConfig(**DTN_TINY)),
    "dtn_bw": lambda: dtn.DTN(dtn.DTNConfig(**DTN_TINY, batch_weight="one_sided")),
    "xgan": lambda: xgan.XGAN(xgan.XGANConfig(**XGAN_TINY)),
    "xgan_bw": lambda: xgan.XGAN(xgan.XGANConfig(**XGAN_TINY, batch_weight="two_sided")),
    "irwgan": lambda: irwgan.IrwGAN(irwgan.IrwGANConfig(ngf=4, ndf=4, n_blocks=1, beta_dim=4)),
    # The modalities' centres as initialised (zeros: every X image in modality 0); stage 1
    # is test_balagan's.
    "balagan": lambda: balagan.BalaGAN(balagan.BalaGANConfig(
        gen_dim=4, dis_dim=4, clusters=3, noise_dim=5, contrast_dim=4, contrast_features=8,
        bank_size=4)),
}


def _batch(n, i, b=4, seed=100):
  """`n` stacked batches of each domain (an iteration's, or the data-dependent start's)."""
  rng = np.random.default_rng(seed + i)
  return {k: rng.uniform(-1, 1, (n, b, 32, 32, 1)).astype(np.float32) for k in ("x", "y")}


def _tree_spec(tree):
  return {jax.tree_util.keystr(p): list(np.shape(v))
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _checksums(params):
  """Per top-level part and network: sum and sum of squares of every parameter."""
  out = {}
  for part, nets in params.items():
    for name, tree in nets.items():
      leaves = [np.asarray(a, np.float64) for a in jax.tree.leaves(tree)]
      out[f"{part}/{name}"] = [float(sum(a.sum() for a in leaves)),
                               float(sum(np.square(a).sum() for a in leaves))]
  return out


def _record(variant):
  method = VARIANTS[variant]()
  state = method.init_state(jax.random.PRNGKey(0))
  if getattr(method, "prepare_batches", 0):   # DistanceGAN's distance statistics
    state = method.prepare(state, _batch(method.prepare_batches, 0, seed=7))
  spec = {"params": _tree_spec(state.params), "spectral": _tree_spec(state.spectral),
          "opt_state": _tree_spec(state.opt_state)}
  step = jax.jit(method.iteration)
  history = []
  for i in range(ITERATIONS):
    state, metrics, _ = step(state, _batch(method.batches_per_iteration, i))
    history.append({k: float(v) for k, v in sorted(jax.device_get(metrics).items())})
  return {"tree": spec, "metrics": history, "checksums": _checksums(jax.device_get(state.params))}


def _golden():
  if not os.path.isfile(PATH):
    pytest.fail(f"{PATH} missing: regenerate with JDBW_WRITE_GOLDEN=1")
  with open(PATH) as f:
    return json.load(f)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_numerics_match_the_recorded_values(variant):
  got = _record(variant)
  if os.environ.get("JDBW_WRITE_GOLDEN"):
    data = json.load(open(PATH)) if os.path.isfile(PATH) else {}
    data[variant] = got
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(PATH, "w") as f:
      json.dump(data, f, indent=1, sort_keys=True)
    pytest.skip("recorded")
  want = _golden()[variant]
  assert got["tree"] == want["tree"]          # old checkpoints keep restoring
  assert len(got["metrics"]) == len(want["metrics"])
  for i, (g, w) in enumerate(zip(got["metrics"], want["metrics"])):
    assert sorted(g) == sorted(w), f"iteration {i}: metric names changed"
    np.testing.assert_allclose([g[k] for k in sorted(g)], [w[k] for k in sorted(w)],
                               rtol=RTOL, atol=ATOL.get(variant, 1e-5), err_msg=f"iteration {i}")
  assert sorted(got["checksums"]) == sorted(want["checksums"])
  for k, (want_sum, want_sq) in want["checksums"].items():
    got_sum, got_sq = got["checksums"][k]
    np.testing.assert_allclose(got_sq, want_sq, rtol=RTOL, err_msg=k)
    # A sum of thousands of parameters cancels to near zero, so it is held to the scale
    # of the parameters (their L2 norm), not to its own: Adam turns the float noise of an
    # exactly-zero gradient (a bias before instance norm) into a +-lr step of either sign.
    assert abs(got_sum - want_sum) <= RTOL * np.sqrt(want_sq), (k, got_sum, want_sum)
