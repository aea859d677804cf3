"""The goals, and the report as a table of text."""

from bench.commands import INVALID_OVERRIDE
from bench.peers import PEER_LABELS, PEERS
from pipeline.constants import N_CLASSES, N_PIXELS

TARGETS = {
    "loop_ratio_batch_32": 2.5,  # float32, epoch / floor
    "loop_ratio_batch_256": 1.5,
    "loop_ratio_full_batch": 1.5,
    "mlflow_share": 0.10,  # of a default training run's wall time
    "joblib_over_sequential": 0.6,
    "noop_repro_over_status": 1.5,
    "peak_rss_mb": 300,  # of a full-size (60,000-row) default training run
    "pyfunc_over_forward": 2.0,  # 10,000 digits through the loaded model / the bare forward pass
    "hidden_loop_ratio": 2.0,  # the hidden-layer loop's epoch / its floor, batch 256 and full
    "hidden_peak_rss_mb": 400,  # a 256-unit hidden layer on 60,000 rows, tracking off
    "loop_over_jax_scan": 1.0,  # best epoch of pipeline.sgd.SGD / of JAX's lax.scan epoch, batch 32 and 256
}


def target_checks(report):
    """``[(what, measured, target)]`` for every target whose figure was measured."""
    checks = []
    loop_targets = {32: "loop_ratio_batch_32", 256: "loop_ratio_batch_256", "full": "loop_ratio_full_batch"}
    for row in report.get("loop", []):
        if row["dtype"] == "float32" and row["batch_size"] in loop_targets:
            checks.append((f"epoch / floor, {row['variant']}, batch {row['batch_size']}, float32", row["ratio"], TARGETS[loop_targets[row["batch_size"]]]))
    for row in report.get("pyfunc", []):
        checks.append((f"pyfunc predict / bare forward, {row['variant']}, {row['rows']:,} rows", row["ratio"], TARGETS["pyfunc_over_forward"]))
    if "hidden" in report:
        for row in report["hidden"]["loop"]:
            checks.append((f"epoch / floor, {row['variant']} ({row['hidden']} hidden units), batch {row['batch_size']}, float32",
                           row["ratio"], TARGETS["hidden_loop_ratio"]))
        checks.append(("peak RSS (MB) of a 256-unit hidden layer on 60,000 rows, tracking off",
                       report["hidden"]["memory"]["peak_rss_mb"], TARGETS["hidden_peak_rss_mb"]))
    for row in report.get("peers", {}).get("rows", []):
        if row["batch_size"] in (32, 256) and "jax_scan" in row["project_over_peer"]:
            checks.append((f"loop / JAX lax.scan epoch, {row['variant']}, batch {row['batch_size']}", row["project_over_peer"]["jax_scan"], TARGETS["loop_over_jax_scan"]))
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
        gflop = 4 * data["rows"] * N_PIXELS * N_CLASSES / 1e9
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
    if "hidden" in report:
        h = report["hidden"]
        lines += ["", "hidden-layer loop (pipeline.mlp_sgd.HiddenLayerSGD), float32: seconds per epoch, median (min-max); floor: uint8->float",
                  "pass + the five products of every batch (P W1ᵀ, H W2ᵀ, Δ2ᵀ H, Δ2 W2, Δ1ᵀ P); ratio: best epoch / best floor",
                  f"  {'variant':8} {'hidden':>6} {'batch':>5} {'threads':>7} {'epoch s':>21} {'samples/s':>10} {'floor s':>7} {'ratio':>6}"]
        for r in h["loop"]:
            lines.append(f"  {r['variant']:8} {r['hidden']:>6} {r['batch_size']!s:>5} {r['loop_threads']:>7} {formatted(r['epoch_seconds']):>21} "
                         f"{r['samples_per_second'] / 1e6:>8.2f} M {r['floor_seconds']['median']:>7.3f} {r['ratio']:>5.2f}x")
        m = h["memory"]
        lines.append(f"  peak RSS of {m['command']} on {m['rows']:,} rows: {m['peak_rss_mb']:.0f} MB ({m['seconds']:.1f} s)")
    if "peers" in report:
        lines += ["", *peers_table(report["peers"])]
    if "evaluate" in report:
        lines += ["", "evaluation (pipeline.model.forward + pipeline.metrics.evaluate), seconds, median (min-max):"]
        lines += [f"  {r['variant']:8} {r['rows']:,} rows  {formatted(r['seconds'], 4)}" for r in report["evaluate"]]
    if "pyfunc" in report:
        lines += ["", "the logged MLflow Model (pipeline.served_model), seconds, median (min-max): log (first of the variant; again),",
                  "load (in this process; in a fresh one: import mlflow.pyfunc + load), predict float32 pixel rows through the",
                  "pyfunc against the bare forward pass (pixel/255 and the model table's forward) on the same rows:"]
        for r in report["pyfunc"]:
            cold = r["cold_load_seconds"]
            lines += [
                f"  {r['variant']:8} log {r['log_seconds']['first']:.2f}; {formatted(r['log_seconds']['again'], 2)}   load {formatted(r['load_seconds'], 3)}; "
                f"fresh process {formatted(cold['import'], 2)} + {formatted(cold['load'], 2)}",
                f"  {'':8} {r['rows']:,} rows: pyfunc {formatted(r['pyfunc_seconds'], 4)}, forward {formatted(r['forward_seconds'], 4)}: "
                f"{r['ratio']:.2f}x (median of the turns; fastest over fastest {r['fastest_ratio']:.2f}x)",
            ]
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


def peers_table(p):
    """The loop beside the peers: seconds per epoch, and the loop's time over each peer's."""
    lines = ["the loop beside compiled peers (bench/peers.py), float32, same rows, batches, order, W0 and lr:"]
    if p["missing"]:
        lines.append(f"  not installed: {', '.join(sorted(set(p['missing'].values())))} (peers {', '.join(p['missing'])}): {p['install']}")
    if not p["rows"]:
        return lines
    names = ["project", *[peer for peer in PEERS if peer not in p["missing"]]]
    lines += [
        f"  project = pipeline.sgd.SGD; {'; '.join(f'{k} = {PEER_LABELS[k]}' for k in names[1:])}",
        f"  peers' gradient: {p['gradient']}; threads: " + ", ".join(f"{k} {v}" for k, v in p["threads"].items()),
        "  per epoch, median: wall seconds, then CPU seconds of all threads; (x): the loop's best over the peer's best,",
        "  above 1 when the peer is faster",
        f"  {'variant':8} {'batch':>5} {'':4} " + " ".join(f"{n:>16}" for n in names),
    ]
    for r in p["rows"]:
        for label, seconds, ratios in (("wall", "epoch_seconds", "project_over_peer"), ("CPU", "epoch_cpu_seconds", "project_over_peer_cpu")):
            cells = []
            for n in names:
                if n not in r[seconds]:
                    cells.append("-")
                    continue
                ratio = f" ({r[ratios][n]:.2f}x)" if n in r[ratios] else ""
                cells.append(f"{r[seconds][n]['median']:.3f}{ratio}")
            lines.append(f"  {r['variant']:8} {r['batch_size']!s:>5} {label:4} " + " ".join(f"{c:>16}" for c in cells))
        lines += [f"    {n} failed: {error}" for n, error in r["failed"].items()]
    lines.append(f"  not in the peers' figures: {p['extra_work']}")
    return lines
