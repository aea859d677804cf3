"""A config's model fields as a table entry (its training loop: pipeline.mlp_sgd.trainer).

    build({"name": "mlp", "output": "softmax", "loss": "cross_entropy", "bias": True,
           "hidden": 128, "activation": "relu", "init": "auto"})      -> pipeline.mlp.Network
    build({... "hidden": None ...})                                    -> pipeline.model.Variant

The fields are conf/model/<name>.yaml's (defaults in conf/model/base.yaml). ``output``, ``loss``
and ``activation`` name pieces of pipeline.heads and pipeline.activations; ``hidden`` is the
width of a hidden layer, None for none. Pure: no I/O, no config library.
"""

from pipeline.activations import ACTIVATIONS
from pipeline.mlp import Network
from pipeline.heads import LOSSES, OUTPUTS
from pipeline.model import Variant

FIELDS = ("name", "output", "loss", "bias", "hidden", "activation", "init")


def build(spec):
    """The table entry the model fields ``spec`` (a mapping with FIELDS) describe. ValueError for
    an unknown piece or a combination the pieces refuse (cross-entropy without a softmax)."""
    for field, table in (("output", OUTPUTS), ("loss", LOSSES), ("activation", ACTIVATIONS)):
        if spec[field] not in table:
            raise ValueError(f"model.{field}={spec[field]!r}: expected one of {', '.join(table)}")
    output, loss = OUTPUTS[spec["output"]], LOSSES[spec["loss"]]
    try:
        if spec["hidden"]:
            return Network(spec["name"], output, loss, bool(spec["bias"]), activation=ACTIVATIONS[spec["activation"]],
                           hidden=int(spec["hidden"]), init=spec["init"])
        return Variant(spec["name"], output, loss, bool(spec["bias"]))
    except ValueError as error:
        raise ValueError(f"model.loss={spec['loss']}, model.output={spec['output']}: {error}") from None


def plain(spec):
    """``spec``'s FIELDS as a plain dict (from a config node or a mapping), for saving with the
    parameters."""
    return {field: spec[field] for field in FIELDS}
