"""bench.peers: the compiled peers train exactly the project's model, and the benchmark says how to
install them when they are absent. The peers are optional (the [bench] extra): their tests skip
without jax or torch."""

import importlib.util

import numpy as np
import pytest

from bench import peers
from bench.peer_models import Orders, applies, make_peer
from bench.data import benchmark_rows, train_settings
from bench.report import peers_table
from bench.targets import loop_checks
from pipeline.initial import seeded_generators
from pipeline.sgd import SGD

ROWS = 600  # 18 batches of 32 and a remainder of 24: the scan and the remainder step both run
LR = {"softmax": 0.5, "linear": 0.005}


@pytest.fixture(scope="module")
def rows():
    images, labels, _ = benchmark_rows(ROWS)
    return images, labels


def needs(peer, batch_size):
    module = peers.PEER_MODULES[peer]
    # Slow: each peer compiles its graphs first (XLA for JAX; torch.compile with a C++ compiler),
    # and importing JAX or torch costs a worker seconds more. They check the benchmark's peers.
    marks = [pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} not installed: {peers.INSTALL_HINT}"),
             pytest.mark.slow]
    return pytest.param(peer, batch_size, marks=marks, id=f"{peer}-{'full' if batch_size == ROWS else f'batch{batch_size}'}")


@pytest.mark.parametrize("variant", ["softmax", "linear"])
@pytest.mark.parametrize(("peer", "batch_size"), [needs(peer, b) for peer in peers.PEERS for b in (32, ROWS) if applies(peer, b, ROWS)])
def test_two_epochs_of_a_peer_give_the_projects_W(rows, peer, batch_size, variant):
    """Same W₀, rows, batches and shuffled order: the autodiff of a peer and the hand-derived
    gradient of pipeline.sgd.SGD move W to the same place, up to float32 rounding."""
    images, labels = rows
    W0 = np.random.default_rng(1).normal(0, 0.01, (10, 784)).astype(np.float32)
    sgd = SGD(images, labels, W0.copy(), variant, LR[variant], batch_size, seeded_generators(0)[1], divergence_factor=100.0)
    peer_object = make_peer(peer, images, labels, variant, LR[variant], batch_size)
    orders = Orders(0, ROWS, batch_size)
    W = W0
    for _ in range(2):  # the second epoch checks that the orders stay in step
        assert not sgd.run_epoch().diverged
        W = peer_object.epoch(W, orders.next())
    moved = np.abs(sgd.W - W0).max()
    assert moved > 1e-3  # W really moved: the comparison below is not of two W₀
    np.testing.assert_allclose(W, sgd.W, rtol=0, atol=1e-5 * moved)


def test_a_peer_takes_the_projects_order():
    """Orders draws each epoch's permutation as SGD does, from the same seed."""
    sgd_rng, orders = seeded_generators(3)[1], Orders(3, 50, 8)
    for _ in range(3):
        np.testing.assert_array_equal(orders.next(), sgd_rng.permutation(50))
    assert Orders(3, 50, 50).next() is None  # a full batch keeps the stored order


def test_without_the_peers_the_benchmark_says_how_to_install_them(rows, monkeypatch):
    monkeypatch.setattr(peers, "missing", lambda: dict(peers.PEER_MODULES))
    images, labels = rows
    report = peers.peers(images, labels, {"softmax": train_settings("softmax")}, epochs=1)
    assert report["rows"] == [] and report["install"] == "pip install -e '.[bench]'"
    printed = "\n".join(peers_table(report))
    assert "not installed: jax, torch" in printed and "pip install -e '.[bench]'" in printed
    assert loop_checks({"peers": report}) == []


@pytest.mark.slow  # the benchmark's peers part, timed: JAX compiles and runs each peer
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason=f"jax not installed: {peers.INSTALL_HINT}")
def test_the_peers_part_times_the_loop_beside_jax(rows, monkeypatch):
    """With torch absent: JAX's two peers timed beside the loop, the ratios from the best epochs,
    the missing one named with the install command, and the loop's extra work said."""
    monkeypatch.setattr(peers, "missing", lambda: {p: m for p, m in peers.PEER_MODULES.items() if m == "torch"})
    images, labels = rows
    settings = {v: train_settings(v) for v in ("softmax", "linear")}
    report = peers.peers(images, labels, settings, epochs=2, batch_sizes=(32, None))
    assert [(r["variant"], r["batch_size"]) for r in report["rows"]] == [("softmax", 32), ("linear", 32), ("softmax", "full"), ("linear", "full")]
    for r in report["rows"]:
        expected = {"project", "jax_step"} | ({"jax_scan"} if r["batch_size"] == 32 else set())
        assert set(r["epoch_seconds"]) == expected and r["failed"] == {}
        for name in expected - {"project"}:
            assert len(r["epoch_seconds"][name]["samples"]) == 2
            assert r["project_over_peer"][name] == pytest.approx(r["epoch_seconds"]["project"]["min"] / r["epoch_seconds"][name]["min"])
            assert r["project_over_peer_cpu"][name] == pytest.approx(r["epoch_cpu_seconds"]["project"]["min"] / r["epoch_cpu_seconds"][name]["min"])
    checks = loop_checks({"peers": report})
    assert [c["what"] for c in checks] == [
        "loop / JAX lax.scan epoch, wall, softmax, batch 32", "loop / JAX lax.scan epoch, wall, linear, batch 32",
        "loop / fastest peer, full batch, wall, softmax (fastest: jax_step)", "loop / fastest peer, full batch, wall, linear (fastest: jax_step)",
    ]
    rows = report["rows"]
    assert [c["measured"] for c in checks] == [rows[0]["project_over_peer"]["jax_scan"], rows[1]["project_over_peer"]["jax_scan"],
                                               rows[2]["project_over_peer"]["jax_step"], rows[3]["project_over_peer"]["jax_step"]]
    assert all(c["met"] == (c["measured"] <= 1.0) and (c["bound"] is None) == c["met"] for c in checks)
    printed = "\n".join(peers_table(report))
    assert "not installed: torch" in printed and "pip install -e '.[bench]'" in printed
    assert "divergence check" in printed and "autodiff" in printed
