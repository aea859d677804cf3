"""The report as text: one block per part measured (the targets: bench/targets.py)."""

from bench.commands import INVALID_OVERRIDE
from bench.peers import PEER_LABELS, PEERS
from pipeline.constants import N_CLASSES, N_PIXELS


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
        ip, fresh, start = t["in_process"], t["fresh_process"], t["mlflow_startup"]
        lines += [
            "", f"default training run ({t['command']}) on {t['data_dir']}, seconds, median (min-max):",
            f"  in one process: untracked {formatted(ip['untracked_seconds'], 2)} (the first {ip['first_untracked_seconds']:.2f}); "
            f"tracked: the first {ip['first_tracked_seconds']:.2f}, later {formatted(ip['later_tracked_seconds'], 2)}",
            f"  tracking's cost: the first run +{ip['first_overhead']:.2f} s, later runs +{ip['later_overhead']:.2f} s (pair by pair)",
            f"  fresh processes: untracked {formatted(fresh['untracked'], 2)}, tracked {formatted(fresh['tracked'], 2)}: "
            f"+{fresh['overhead']:.2f} s; peak RSS tracked {fresh['peak_rss_mb']:.0f} MB",
        ]
        if start:
            lines.append(f"  MLflow's start-up alone, in a fresh process: import {start['import']:.2f} s, open the store and create a run {start['open']:.2f} s")
    if "startup" in report:
        lines += ["", f"start-up to a validated config (with {INVALID_OVERRIDE} each stage exits 2 after validating), seconds:"]
        lines += [f"  {name:30} {formatted(timing, 2)}" for name, timing in report["startup"].items()]
    if "dvc" in report:
        d = report["dvc"]
        lines += [
            "",
            f"dvc: a fresh clone's first repro {d['first_repro_seconds']:.1f} s ({d['first_repro_stages']} stages{'' if d.get('first_repro_target', 'all') == 'all' else ': ' + d['first_repro_target'] + ' and upstream'}{', store copied in' if d.get('first_repro_store') == 'copied' else ''}); then dvc status "
            f"{formatted(d['status_seconds'], 2)} s, no-op dvc repro {formatted(d['noop_repro_seconds'], 2)} s: {d['noop_repro_over_status']:.2f}x",
        ]
    if "sweep" in report:
        lines += sweep_lines(report["sweep"])
    if "ui" in report:
        u = report["ui"]
        lines += ["", f"MLflow's UI over the clone's store until it answers (GET / and a runs search), seconds, median (min-max):"]
        for key, command in u["commands"].items():
            figure = u["seconds"][key]
            shown = formatted(figure, 1) if "median" in figure else f"no answer in {figure['failed']} of {len(figure['samples'])}"
            lines.append(f"  {shown:>16}  {command}")
    lines += ["", "benchmark time: " + ", ".join(f"{part} {t:.0f} s" for part, t in report["bench_seconds"].items())
              + f"; in all {sum(report['bench_seconds'].values()):.0f} s"]
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


def sweep_lines(s):
    """The sweep's time, and where it went (its runs' start and end times)."""
    if "skipped" in s:
        return ["", f"sweep: skipped, {s['skipped']}"]
    p = s["phases"]
    return [
        "",
        f"sweep ({s['command']}, in the clone): {s['seconds']:.1f} s for {s['jobs']} jobs",
        "  from its runs' start and end times in the clone's store, seconds:",
        f"  {p['to_sweep_run']:5.1f}  until the sweep's run exists (the interpreter, Hydra, MLflow's start-up)",
        f"  {p['to_first_job']:5.1f}  then until the first job's run (Hydra composing every job's config to validate it, joblib's workers starting)",
        f"  {p['jobs']:5.1f}  the {p['job_runs']} job runs, first start to last end, on {s['workers']} workers; a run {formatted(p['job_run_seconds'], 2)}",
        "         (training and its tracking; each job's evaluation and Hydra's work for it fall between a worker's runs)",
        f"  {p['after_last_job']:5.1f}  after the last job's run (its evaluation, the best job of each variant registered, the sweep's run ended)",
    ]
