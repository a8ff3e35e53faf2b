"""The part of a model after one layer, as a module of its own (for Ablation-CAM).

Ablation-CAM needs the model's output for N·K modified copies of one layer's output. Run through
the whole model with a hook that swaps the layer's output, every copy pays for the layers before
it again, only to throw their result away; pytorch-grad-cam does exactly that. When the model can
be traced with ``torch.fx`` and nothing after the layer reads a value computed before it (no skip
connection around the layer), the layers after it form a function of the layer's output alone:
:func:`model_tail` builds that function, sharing the model's modules and parameters, so each copy
costs only the tail's forward. Anything else (an untraceable forward, a skip connection around the
layer, a layer called twice) returns None and callers run the whole model as before.
"""

from __future__ import annotations

from torch import fx, nn

__all__ = ["model_tail"]


class _LayerAsLeaf(fx.Tracer):
    """Trace ``model`` keeping the named layer as one call (it may be a container)."""

    def __init__(self, layer_name: str) -> None:
        super().__init__()
        self.layer_name = layer_name

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer_name or super().is_leaf_module(
            m, module_qualified_name
        )


def _reads_input(graph: fx.Graph) -> set[fx.Node]:
    """The nodes whose value depends on the model's input (the placeholders)."""
    dependent: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(arg in dependent for arg in node.all_input_nodes):
            dependent.add(node)
    return dependent


def model_tail(model: nn.Module, layer_name: str) -> fx.GraphModule | None:
    """A module computing ``model``'s output from the raw output of ``layer_name``, or None when
    the model's output is not a function of that output alone (or cannot be traced).

    The tail shares the model's submodules (same parameters, same train/eval mode, same hooks).
    """
    if not layer_name:
        return None
    try:
        graph = _LayerAsLeaf(layer_name).trace(model)
    except Exception:  # any failure to trace means "run the whole model"
        return None
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer_name]
    if len(calls) != 1:
        return None
    layer = calls[0]
    outputs = [n for n in graph.nodes if n.op == "output"]
    dependent = _reads_input(graph)
    # the nodes computed from the layer's output
    after: set[fx.Node] = {layer}
    for node in graph.nodes:
        if any(arg in after for arg in node.all_input_nodes):
            after.add(node)
    if len(outputs) != 1 or outputs[0] not in after:
        return None
    tail = fx.Graph()
    env: dict[fx.Node, fx.Node] = {layer: tail.placeholder("activation")}
    for node in graph.nodes:
        if node is layer or node.op == "placeholder":
            continue
        if node in after:
            # a value from before the layer (other than its output) feeds the tail: a skip
            # connection around the layer, so the layer's output alone does not determine it
            if any(arg in dependent and arg not in after for arg in node.all_input_nodes):
                return None
            env[node] = tail.node_copy(node, lambda n: env[n])
        elif node not in dependent and node.op != "output":
            env[node] = tail.node_copy(node, lambda n: env[n])  # constants, parameters
    module = fx.GraphModule(model, tail)
    module.graph.eliminate_dead_code()  # constants only the skipped prefix used
    module.recompile()
    # no .train()/.eval() here: it would reset the shared modules' modes, which the caller sets
    return module
