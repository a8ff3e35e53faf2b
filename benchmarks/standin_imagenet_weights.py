"""Write stand-in "ImageNet" files for the MS CPU config's transfer path (issue 17).

The real torchvision files cannot be fetched here. This writes, for each architecture the given
models transfer from, torchvision's own architecture with a seeded default initialization,
saved under the hub file names braincam looks for (``hub_checkpoint_candidates``), so that
``train.weights: imagenet`` runs end to end: the keys and shapes of torchvision's published
files, the 1-channel / 3-channel first-conv adaptation, and the load into the kept backbone.
The weights are random, NOT ImageNet: accuracy differences against training from scratch say
nothing about transfer learning.

    TORCH_HOME=/tmp/standin-hub python benchmarks/standin_imagenet_weights.py resnet18-gap vgg16-fc
"""

from __future__ import annotations

import sys

import torch
import torchvision.models as tvm

from braincam.models.registry import get_spec
from braincam.models.weights import hub_checkpoint_candidates


def write_standin(arch: str, seed: int = 20261201) -> str:
    """Save a seeded torchvision ``arch`` under its default hub file name; return the path.

    The seed is not a training seed (0 here): with ``train.seed``'s value the stand-in would be
    the very initialization a from-scratch run draws, and the two runs could not be told apart.
    """
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {"weights": None}
    if arch in ("googlenet", "inception_v3"):  # the published files carry the auxiliary heads
        kwargs.update(aux_logits=True, init_weights=True)
    state = tvm.get_model(arch, **kwargs).state_dict()
    path = hub_checkpoint_candidates(arch)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return str(path)


def main(models: list[str]) -> None:
    arches = dict.fromkeys(get_spec(name).pretrained for name in models)
    for arch in arches:
        if arch:
            print(arch, write_standin(arch))


if __name__ == "__main__":
    main(sys.argv[1:])
