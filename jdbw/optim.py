"""The optimiser of every trained part: Adam with the authors' optional decays (optax).

A component: methods and batch weight build their optimisers here; it imports nothing of
the project.
"""

from __future__ import annotations

import optax


def adam_optimizer(c, lr: float | None = None):
  """Adam(lr, b1, b2), optional coupled weight decay and step decay (authors' settings).

  `c` has lr, b1, b2, weight_decay, lr_decay_every, lr_decay_rate (and, for CycleGAN's
  linear decay, lr_hold_steps and lr_linear_decay); `lr` overrides c.lr (the weight
  networks' own learning rate). Schedules count optimiser updates of that part.
  """
  lr = c.lr if lr is None else lr
  schedule = lr
  if c.lr_decay_every:
    schedule = optax.exponential_decay(lr, c.lr_decay_every, c.lr_decay_rate, staircase=True)
  # CycleGAN's schedule, held then linearly to 0 (only its config has these fields).
  if getattr(c, "lr_linear_decay", 0):
    schedule = optax.join_schedules(
        [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, c.lr_linear_decay)],
        [c.lr_hold_steps])
  parts = [optax.add_decayed_weights(c.weight_decay)] if c.weight_decay else []
  return optax.chain(*parts, optax.adam(schedule, b1=c.b1, b2=c.b2))
