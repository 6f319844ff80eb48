"""The 3D U-Nets by name: one output channel per class, and the checks of their settings."""

from __future__ import annotations

import pytest
import torch

from common.errors import MedlitError
from volume_seg.networks import build_network


@pytest.mark.parametrize("net", ["unet", "basic_unet", "dynunet"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_networks_output_one_channel_per_class(net: str, num_classes: int) -> None:
    model = build_network(net, num_classes, channels=[4, 8, 16], strides=[2, 2])
    out = model(torch.randn(1, 1, 32, 32, 16))
    assert out.shape == (1, 1 if num_classes == 2 else num_classes, 32, 32, 16)


def test_network_checks() -> None:
    with pytest.raises(MedlitError, match="unknown model.net 'vnet'"):
        build_network("vnet", 2, [4, 8], [2])
    with pytest.raises(MedlitError, match="strides needs 2 entries"):
        build_network("unet", 2, [4, 8, 16], [2])
