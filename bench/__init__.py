"""python -m bench: how fast the pipeline runs on this machine, and how far from its floor.

    python -m bench                  # everything (minutes): a table, and results/bench.json
    python -m bench --only loop      # some parts: loop hidden peers evaluate pyfunc dvc tracking startup sweep ui
    python -m bench --quick          # fewer epochs and repeats: each command, fresh process, cold load once

It prints each part's time as it ends, then one block per part, then the targets: each goal met
or NOT MET, and under one not met the measured bound that stops it and what was tried
(bench/targets.py: issue 15's goals first, then the older ones), and the machine's load average
while each part ran.

Parts (and their keys in the JSON report):

- ``machine``: CPU, cores, Python, numpy, the BLAS numpy calls (threadpoolctl) and OPENBLAS_*
  settings; peak sgemm throughput and memory bandwidth (a large copy), for context.
- ``loop``: seconds per epoch of pipeline.sgd.SGD, the training loop itself, with the train
  stage's settings for everything but batch size and dtype, on 60,000 MNIST-shaped rows, after a
  warm-up epoch: both variants, batch 32, 256 and full, float32 and float64. Each epoch follows a
  sample of its **floor**: one pass converting all rows from uint8 to float (in cache-sized
  blocks) plus the two matrix products of every batch (``P Wᵀ`` and ``Δᵀ P``) summed over the
  epoch, with BLAS on one thread and on its default, the faster counting; for a full batch, on
  the fastest chunk size. ``ratio``: the best epoch over the best floor (on a shared machine the
  best of several runs is the one least disturbed by other processes);
  ``ratio_to_one_thread_floor``: over the floor with BLAS on one thread, as the loop runs it.
- ``hidden``: seconds per epoch of the hidden-layer loop (pipeline.mlp_sgd.HiddenLayerSGD, the
  mlp variant's settings), float32, batch 256 and full, against its own floor measured in the
  same run: the uint8 -> float pass plus the five products of every batch; and the peak RSS of a
  training run with 256 hidden units on the 60,000 rows, tracking off.
- ``peers``: with the ``[bench]`` extra installed (``pip install -e '.[bench]'``), the loop beside
  JAX (the epoch in one ``jit`` with ``lax.scan``; ``jit`` per step) and ``torch.compile``, float32,
  same rows, batches, order, W₀ and learning rate, epochs interleaved round by round; the loop's
  best epoch over each peer's. Without it, says how to install them. See bench/peers.py.
- ``evaluate``: what the evaluate stage computes on 10,000 rows: ``forward`` and ``evaluate``.
- ``pyfunc``: the MLflow Model a training run logs (pipeline.served_model), for each variant:
  seconds to log it, to load it (in this process; in a fresh one, with MLflow's import), and to
  predict 10,000 digits (float32 pixel rows) through the loaded pyfunc against the bare forward
  pass (``pipeline.classifier.scores``: pixel/255 and the model table's forward) on the same rows,
  timed by turns; ``ratio``: the median over the turns of pyfunc over forward (the machine's
  drift cancels in each turn). In the workspace's temporary MLflow store.
- ``dvc``: a fresh clone: ``git clone`` of the committed files into a temporary folder, this venv
  reused, its first ``dvc repro`` timed (offline the data is the packaged digits; the clone's own
  MLflow store is created by it, as a user's would be); then a no-op ``dvc repro`` against
  ``dvc status``, by turns. ``--dvc-target STAGE``: all three of STAGE and its upstream stages
  only (a smaller pipeline, as the tests run it).
- ``tracking``: what tracking costs a default training run (bench/per_run.py) on the clone's data:
  in one process, as a sweep's worker pays it (the first tracked run, later ones, each against an
  untracked run), and in fresh processes (``python -m pipeline.train`` on and off by turns, with
  the tracked run's peak RSS); and MLflow's start-up alone (import; open the store, create a run).
- ``startup``: wall time of ``python -m pipeline.<stage>`` up to a validated config: given an
  invalid value, each stage exits 2 right after validating (interpreter, imports, Hydra).
- ``sweep``: the preset sweep ``python -m pipeline.train -m +experiment=variant_vs_lr
  hydra/launcher=joblib`` in the clone, on its data and store.
- ``ui``: seconds until MLflow's UI answers over the clone's store (``GET /`` and a runs search),
  started as ``python -m experiments.ui`` (the README's command), and, once each, as ``mlflow ui
  --workers 1`` with job execution off and as plain ``mlflow ui`` (bench/ui.py).

bench/targets.py holds the goals. Nothing is written into the working tree but the report; the
commands run in temporary folders, on temporary MLflow stores.

Modules: measure (timing), data (the rows), machine, loop (the training loop and its floor,
evaluation), hidden (the hidden-layer loop, its floor and memory), peers (JAX and torch beside
the loop) and peer_models (the peers), served (the logged model), commands (the clone, dvc,
startup, sweep), per_run (tracking's cost), ui, report (the parts' blocks), targets, cli.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = 60_000
EVALUATION_ROWS = 10_000
