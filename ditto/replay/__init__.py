"""Network replay: execute a TensorRT `INetworkDefinition` layer by layer in torch.

No machine here can run a TensorRT engine, and on a GPU node a mismatch between engines
leaves one question open: is the network wrong, or do TensorRT's kernels differ? Replay
answers the first anywhere a network can be built: `replay_network(network, inputs)` walks
the layers in dependency order and computes each from the layer's own attributes.

How replay stays independent of ditto's converters (a converter bug must not be mirrored by
a replay bug):

- Every layer's replay is written from TensorRT's documentation of the layer (NvInfer.h class
  comments, the operator pages, the Python API), cited in `layers.py`, `attention.py` and
  `plugins.py`. Nothing here imports `ditto.trt` or looks at FX nodes; replay knows layers,
  not what a converter meant by them.
- TensorRT checks replay: every computed output must have the data type and the static
  dimensions TensorRT's own shape inference declared for it, so a misread attribute
  (a permutation applied the wrong way round, a slice off by one) fails at its layer.
- What the documentation leaves open is refused, not guessed: an unknown layer type, an
  attribute of a newer TensorRT, an enum value without an entry, an undocumented corner case
  (the message names the layer, its type and the attribute).
- The tests (tests/replay/test_layers.py) build networks by hand with the TensorRT API, never
  through the converters, and compare with numpy/torch expectations written independently;
  model tests compare the replay backend with `fx` and `hf`, and deliberately broken
  converters must make replay disagree.
"""

from ditto.registry import import_all
from ditto.replay.network import replay_network
from ditto.replay.registry import ReplayError, replays

import_all(__name__)  # every module of this folder registers its layers' replays (and the replay backend)

__all__ = ["replay_network", "ReplayError", "replays"]
