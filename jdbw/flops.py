"""Analytic FLOP count of a traced computation, layer by layer.

Walks the jaxpr of a function (forward, backward and the gradient penalty's double
backward as autodiff wrote them) and counts every convolution and matmul from its
shapes: 2 FLOPs per multiply-add, zeros inserted by dilation not counted (the
input-gradient of a strided convolution costs what its forward costs), padding
ignored. Elementwise work is not counted. Each count is keyed by the flax module path
that issued it, so the result reads per network and per layer.

Trace models with `conv_impl='xla'`: im2col's transposed convolution multiplies the
inserted zeros, which is work done but not work needed.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Any, Callable

import jax
import numpy as np


def dot_general_flops(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  contract = math.prod(lhs[d] for d in lc)
  batch = math.prod(lhs[d] for d in lb)
  free_l = math.prod(s for d, s in enumerate(lhs) if d not in lc and d not in lb)
  free_r = math.prod(s for d, s in enumerate(rhs) if d not in rc and d not in rb)
  return 2 * batch * free_l * free_r * contract


def conv_flops(eqn) -> int:
  """2 x outputs x (kernel taps x input features per group) / lhs dilation."""
  out = eqn.outvars[0].aval.shape
  rhs = eqn.invars[1].aval.shape
  dn = eqn.params["dimension_numbers"]
  rhs_spec = dn.rhs_spec  # (out feature, in feature, *spatial)
  taps = math.prod(rhs[d] for d in rhs_spec[2:])
  in_features = rhs[rhs_spec[1]]
  dilation = math.prod(eqn.params.get("lhs_dilation") or (1,))
  return 2 * math.prod(out) * taps * in_features // dilation


_COUNTED = {"dot_general": dot_general_flops, "conv_general_dilated": conv_flops}


def _layer_key(eqn) -> str:
  """'Generator/ResBlock_0/SNLayer_1' from the name stack, transforms stripped."""
  stack = str(eqn.source_info.name_stack)
  parts = []
  for p in stack.split("/"):
    p = re.sub(r"^(?:\w+\()+", "", p).rstrip(")")  # jvp(Generator) -> Generator
    if p and not p.startswith(("sn", "layer")) and "." not in p:
      parts.append(p)
  return "/".join(parts) or "<outside modules>"


def _sub_jaxprs(eqn):
  """(jaxpr, multiplicity) pairs of an equation's inner computations."""
  name, params = eqn.primitive.name, eqn.params
  if name == "scan":
    return [(params["jaxpr"].jaxpr, params["length"])]
  if name == "cond":
    # The most expensive branch: an upper bound on what runs.
    return [(max((b.jaxpr for b in params["branches"]), key=lambda j: sum(
        count_jaxpr(j).values())), 1)]
  if name == "while":
    raise ValueError("while loops have no static trip count; count their body separately")
  subs = []
  for v in params.values():
    for item in (v if isinstance(v, (tuple, list)) else (v,)):
      if hasattr(item, "jaxpr") and hasattr(item, "consts"):
        subs.append((item.jaxpr, 1))
      elif hasattr(item, "eqns"):
        subs.append((item, 1))
  return subs


def count_jaxpr(jaxpr, scale: int = 1, tag: str = "", into=None) -> collections.Counter:
  """Counter {(tag, layer): FLOPs}; equations inside a scan are tagged 'scan'."""
  into = collections.Counter() if into is None else into
  for eqn in jaxpr.eqns:
    fn = _COUNTED.get(eqn.primitive.name)
    if fn is not None:
      into[(tag, _layer_key(eqn))] += scale * fn(eqn)
    for sub, mult in _sub_jaxprs(eqn):
      sub_tag = "scan" if eqn.primitive.name == "scan" else tag
      count_jaxpr(sub, scale * mult, sub_tag, into)
  return into


def count(fn: Callable, *args: Any) -> collections.Counter:
  """FLOPs of `fn(*args)` per (tag, layer); args may be arrays or ShapeDtypeStructs."""
  return count_jaxpr(jax.make_jaxpr(fn)(*args).jaxpr)


def by_network(counts: collections.Counter) -> dict[str, int]:
  """Totals per top-level module (network class), largest first."""
  out = collections.Counter()
  for (_, layer), f in counts.items():
    out[layer.split("/")[0]] += f
  return dict(out.most_common())


def total(counts: collections.Counter) -> int:
  return int(np.sum(list(counts.values()), dtype=np.int64)) if counts else 0
