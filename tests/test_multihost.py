"""Multi-host data parallelism on two local processes (jax.distributed, CPU collectives).

Each process has one CPU device; together they form the same two-device mesh as one
process with two fake devices, so the two must agree. Through the real entrypoint:
only process 0 writes config, events and figures; both checkpoint and both resume.
"""

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import helpers

from jdbw import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices):
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path,
          "XLA_FLAGS": helpers.xla_flags(devices)}


def _launch(args_of, n, devices, timeout=600):
  procs = [subprocess.Popen(args_of(i), cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(n)]
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
  worker = os.path.join(ROOT, "tests", "multihost_worker.py")
  port = _port()
  multi, single = str(tmp_path / "multi.json"), str(tmp_path / "single.json")
  _launch(lambda i: [sys.executable, worker, multi, str(i), "2", str(port)], 2, devices=1)
  import multihost_worker   # the reference: this process's two fake devices (conftest.py)
  multihost_worker.main(single, 0, 1, 0)
  got, want = json.load(open(multi)), json.load(open(single))
  assert [r["devices"] for r in got] == [2, 2] and got[0]["local_devices"] == 1
  for g, w in zip(got, want):
    assert sorted(g["metrics"]) == sorted(w["metrics"])
    np.testing.assert_allclose([g["metrics"][k] for k in sorted(g["metrics"])],
                               [w["metrics"][k] for k in sorted(w["metrics"])], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(g["w_x"], w["w_x"], rtol=1e-5)   # gathered in batch order
    np.testing.assert_allclose(g["checksum"], w["checksum"], rtol=1e-6)


def test_each_process_reads_its_own_slice():
  spec = data.DomainSpec(source="digits", name="x")
  parts = [data.load_domain(spec, process_index=i, process_count=2) for i in range(2)]
  whole = data.load_domain(spec)
  flat = lambda d: {bytes(im) for im in d.data.images}
  assert not flat(parts[0]) & flat(parts[1])
  assert len(parts[0].data.images) + len(parts[1].data.images) == len(whole.data.images)


def test_entrypoint_on_two_processes_writes_once_stops_together_on_sigterm_and_resumes(
    tmp_path):
  """Through the entrypoint on two processes: only process 0 writes config, events and
  figures, both checkpoint. A preemption notice reaches one process (SIGTERM to process
  1 alone): JAX's preemption service makes both stop after the same step, both write
  that checkpoint (orbax's save is collective: at different steps it would hang) and
  exit with status 75; the same command then resumes both from it and finishes."""
  import re
  import signal
  import threading
  workdir = str(tmp_path / "run")

  def args(i, port, steps):
    return [sys.executable, "-m", "experiments.mnist_srmnist",
            "--flagfile=experiments/configs/quickstart.flags", f"--workdir={workdir}",
            f"--steps={steps}", "--batch_size=8", "--g_features=4", "--d_features=2",
            "--w_features=2", "--d_steps=1", "--checkpoint_every=2", "--log_every=1",
            "--figure_every=1000", "--jax_distributed",
            f"--coordinator_address=localhost:{port}", "--num_processes=2",
            f"--process_id={i}"]

  port = _port()
  procs = [subprocess.Popen(args(i, port, 400), cwd=ROOT, env=_env(1), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [[], []]
  stepped = threading.Event()

  def read(i):
    for line in procs[i].stdout:
      outs[i].append(line)
      if i == 1 and re.search(r"step 3/400", line):
        stepped.set()

  readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
  for t in readers:
    t.start()
  try:
    assert stepped.wait(300), "".join(outs[1])[-3000:]
    procs[1].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=300) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for t in readers:
    t.join(10)
  text = ["".join(o) for o in outs]
  assert codes == [75, 75], "\n".join(t[-2000:] for t in text)
  stopped = [int(re.search(r"preempted \(SIGTERM\) at step (\d+)", t).group(1)) for t in text]
  assert stopped[0] == stopped[1] and 3 <= stopped[0] < 400, stopped
  saved = lambda: sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")))
  assert saved()[-1] == stopped[0] and all(s % 2 == 0 for s in saved()[:-1]), saved()
  assert os.path.isfile(os.path.join(workdir, "config.json"))
  assert len(glob.glob(os.path.join(workdir, "tb", "events.*"))) == 1   # process 0 only
  # Rerunning the same command on both continues from that step to the end.
  port = _port()
  outs = _launch(lambda i: args(i, port, stopped[0] + 2), 2, devices=1)
  for out in outs:
    assert f"at step {stopped[0]}" in out and "resumed" in out
  assert saved()[-1] == stopped[0] + 2
  assert len(glob.glob(os.path.join(workdir, "tb", "events.*"))) == 2   # one per run
  assert os.path.isfile(os.path.join(workdir, "figures", "figure3_weights.png"))
