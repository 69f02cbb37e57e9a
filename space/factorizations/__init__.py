"""The factorizations: one module each, registering one ``Factorization`` entry (see ``space/_registry.py``).

Importing this package registers them all, in the order below: the order of
``FACTORIZATIONS`` (validation messages and search spaces list them in it).
Adding a factorization is one module here (its builder, its cost, its entry),
its line below, and its test (``tests/space/test_space_registry.py`` then checks
it against fvcore with every wiring).
"""

from . import full  # C3D / R3D: one kt x k x k conv
from . import r2plus1d  # R(2+1)D: 1 x k x k, then kt x 1 x 1, mid channels by the parameter-matching rule
from . import csn_ip  # interaction-preserved CSN: 1x1x1, then depthwise kt x k x k
from . import csn_ir  # interaction-reduced CSN: depthwise kt x k x k
from . import spatial_only  # 1 x k x k, no temporal mixing at all
from . import temporal_shift  # TSM: shift a fraction of channels along time, then 1 x k x k
from . import p3d_b  # P3D-B: parallel 1 x k x k and kt x 1 x 1 branches, summed
from . import depthwise_2plus1d  # MoViNet-style: depthwise 1 x k x k, then depthwise kt x 1 x 1
from . import conv_gru  # ConvNet + recurrence: 1 x k x k per frame, then a convolutional GRU over time (gate convs 1 x kt x kt)

__all__ = ["conv_gru", "csn_ip", "csn_ir", "depthwise_2plus1d", "full", "p3d_b", "r2plus1d", "spatial_only", "temporal_shift"]
