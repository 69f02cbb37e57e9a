"""The wirings: one module each, registering one ``Wiring`` entry (see ``space/_registry.py``).

Importing this package registers them all, in the order below: the order of
``WIRINGS``. Adding a wiring is one module here (its builder, its cost, its
entry), its line below, and its test (``tests/space/test_space_registry.py``
then checks it against fvcore with every factorization).
"""

from . import plain  # two particle convs, no skip
from . import residual  # two particle convs and a shortcut (ResNet-18)
from . import bottleneck  # 1x1x1 down, the particle conv, 1x1x1 up, and a shortcut (ResNet-50)
from . import inverted  # 1x1x1 up, a channel-wise particle conv, 1x1x1 down (MobileNetV2)
from . import single  # one particle conv (C3D / VGG)
from . import inception  # four parallel branches, concatenated (I3D / S3D)

__all__ = ["bottleneck", "inception", "inverted", "plain", "residual", "single"]
