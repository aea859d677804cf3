"""Imports point one way: each module imports only modules of its own layer or lower ones, and
no module imports itself back through others (no cycle). Read from the source (ast), so an
import inside a function counts too."""

import ast

from tests.helpers import imported_modules, module_path, project_modules

# Bottom to top. A module may import its own layer (without a cycle) and any layer below.
LAYERS = (
    ("pure math and constants", {"pipeline.constants", "pipeline.heads", "pipeline.model", "pipeline.activations", "pipeline.mlp", "pipeline.metrics",
                                 "pipeline.least_squares", "pipeline.initial", "pipeline.sgd", "pipeline.mlp_sgd", "pipeline.variants",
                                 "pipeline.pixel_scores"}),
    ("file formats, data, config, pictures", {"pipeline.digits", "pipeline.files", "pipeline.idx", "pipeline.data", "pipeline.mirrors", "pipeline.config", "pipeline.app", "pipeline.exits", "pipeline.pictures",
                                              "pipeline.w_picture", "pipeline.loss_picture", "pipeline.evaluation_pictures"}),
    ("the MLflow adapter", {"pipeline.tracking", "pipeline.tracking.schema", "pipeline.tracking.store", "pipeline.tracking.writer",
                            "pipeline.tracking.runs", "pipeline.tracking.reports", "pipeline.tracking.training", "pipeline.classifier", "pipeline.served_model",
                            "pipeline.registry"}),
    ("stages", {"pipeline.download", "pipeline.train", "pipeline.evaluate", "pipeline.gradcheck", "pipeline.seed_example",
                "pipeline.predict"}),
    ("orchestration", {"experiments.sweep", "experiments.compare", "experiments.compare_figures", "experiments.compare_table", "experiments.ui",
                       "bench", "bench.cli", "bench.commands", "bench.data", "bench.hidden", "bench.loop", "bench.machine", "bench.measure",
                       "bench.peer_models", "bench.peers", "bench.per_run", "bench.report", "bench.served", "bench.targets", "bench.ui",
                       "bench.__main__"}),
)
# Package markers with no code: in no layer, imported by nothing.
EMPTY = {"pipeline", "experiments"}


def layer_of(module):
    for position, (_, modules) in enumerate(LAYERS):
        if module in modules:
            return position
    raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def upward_imports(graph):
    """``[(importer, imported)]`` for every import from a lower layer into a higher one, or
    between stages (a stage never imports another stage)."""
    stages = LAYERS[3][1]
    return sorted(
        (module, imported)
        for module, imports in graph.items()
        for imported in imports
        if layer_of(imported) > layer_of(module) or (module in stages and imported in stages)
    )


def cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state and (found := visit(imported, path + [imported])):
                return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def project_graph():
    """{module: the project modules it imports}, submodules of a package not counting the
    package itself (Python runs a package's ``__init__`` before its submodules)."""
    graph = {}
    for module in project_modules():
        if module in EMPTY:
            assert not module_path(module).read_text().strip(), f"{module}/__init__.py is not empty: give it a layer"
            continue
        graph[module] = {m for m in imported_modules(module) if not module.startswith(m + ".")}
    return graph


def test_every_module_has_a_layer():
    for module in project_graph():
        layer_of(module)


def test_imports_point_down_the_layers():
    assert upward_imports(project_graph()) == []


def test_there_is_no_import_cycle():
    assert cycle(project_graph()) is None


def test_a_stage_importing_another_stage_or_orchestration_is_caught():
    graph = project_graph()
    source = module_path("pipeline.train").read_text() + "\nfrom pipeline import evaluate\n"
    graph["pipeline.train"] = imported_modules("pipeline.train", source)
    assert ("pipeline.train", "pipeline.evaluate") in upward_imports(graph)
    graph["pipeline.train"] = imported_modules("pipeline.train", source + "from experiments.sweep import SweepCallback\n")
    assert ("pipeline.train", "experiments.sweep") in upward_imports(graph)


def test_the_pure_layer_importing_data_is_caught():
    graph = project_graph()
    before = set(upward_imports(graph))
    graph["pipeline.model"] = imported_modules("pipeline.model", "from pipeline.idx import read_idx\n")
    assert set(upward_imports(graph)) - before == {("pipeline.model", "pipeline.idx")}


def test_the_least_squares_floor_does_not_import_the_training_loop():
    assert "pipeline.sgd" not in imported_modules("pipeline.least_squares")


def test_a_cycle_is_found():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_takes_the_mnist_shape_from_the_idx_parser():
    shape = {"N_CLASSES", "IMAGE_SIDE", "N_PIXELS", "PIXEL_MAX"}
    misplaced = [
        (module, node.module, alias.name)
        for module in project_modules()
        for node in ast.walk(ast.parse(module_path(module).read_text()))
        if isinstance(node, ast.ImportFrom) and node.module in ("pipeline.idx", "pipeline.data")
        for alias in node.names
        if alias.name in shape
    ]
    assert misplaced == [], "import the MNIST shape from pipeline.constants"


def test_the_tracking_adapter_draws_nothing():
    for module in LAYERS[2][1]:
        tree = ast.parse(module_path(module).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name and name.startswith(("matplotlib", "pipeline.pictures", "PIL"))}, module
        assert "pipeline.pictures" not in imported_modules(module), module
