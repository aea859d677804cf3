"""python -m bench: how fast the pipeline runs on this machine, and how far from its floor.

    python -m bench                  # everything (minutes): a table, and results/bench.json
    python -m bench --only loop      # some parts: loop hidden peers evaluate pyfunc tracking startup dvc sweep
    python -m bench --quick          # fewer epochs and repeats

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
- ``tracking``: a default training run (``python -m pipeline.train``: softmax, batch 32, 10
  epochs) on the same 60,000 rows with tracking on and off, against an existing MLflow store in a
  temporary folder: wall time, MLflow's share of it, the part of that share that is MLflow's
  start-up (import, opening the store, creating a run: timed alone), and each run's peak RSS.
- ``startup``: wall time of ``python -m pipeline.<stage>`` up to a validated config: given an
  invalid value, each stage exits 2 right after validating (interpreter, imports, Hydra).
- ``dvc``: in a temporary clone of the repository (committed files only), after one full
  ``dvc repro``: a no-op ``dvc repro`` against ``dvc status``.
- ``sweep``: the preset sweep ``python -m pipeline.train -m +experiment=variant_vs_lr`` in that
  clone on the same 60,000 rows, with Hydra's sequential launcher and with
  ``hydra/launcher=joblib``.

report.TARGETS holds the goals, as ratios where this machine's speed varies. Nothing is written
into the working tree but the report; stage runs use temporary folders and a temporary MLflow
store.

Modules: measure (timing), data (the rows), machine, loop (the training loop and its floor,
evaluation), hidden (the hidden-layer loop, its floor and memory), peers (JAX and torch beside
the loop) and peer_models (the peers), served (the logged model), commands (tracking, startup,
dvc, sweep), report (targets, the table), cli.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = 60_000
EVALUATION_ROWS = 10_000
