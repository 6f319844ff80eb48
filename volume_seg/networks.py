"""The segmenter's network by name: MONAI 3D U-Nets with one input channel and the loss's output channels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.networks.nets import BasicUNet, DynUNet, UNet
from torch import nn

from common.errors import MedlitError, check_choice
from volume_seg.losses import output_channels

__all__ = ["NETWORKS", "build_network"]


def _unet(out_channels: int, channels: Sequence[int], strides: Sequence[int], dropout: float, heads: int) -> nn.Module:
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=out_channels,
        channels=channels,
        strides=strides,
        num_res_units=2,
        dropout=dropout,
    )


def _basic_unet(
    out_channels: int, channels: Sequence[int], strides: Sequence[int], dropout: float, heads: int
) -> nn.Module:
    # BasicUNet has a fixed depth of 4 poolings and takes 6 feature sizes; derive them from channels[0]
    base = channels[0]
    features = (base, base, 2 * base, 4 * base, 8 * base, base)
    return BasicUNet(spatial_dims=3, in_channels=1, out_channels=out_channels, features=features, dropout=dropout)


def _dynunet(
    out_channels: int, channels: Sequence[int], strides: Sequence[int], dropout: float, heads: int
) -> nn.Module:
    return DynUNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=out_channels,
        kernel_size=[3] * len(channels),
        strides=[1, *strides],
        upsample_kernel_size=list(strides),
        filters=list(channels),
        dropout=dropout,
        res_block=True,
        deep_supervision=heads > 0,
        deep_supr_num=max(1, heads),
    )


NETWORKS: dict[str, Callable[..., nn.Module]] = {"unet": _unet, "basic_unet": _basic_unet, "dynunet": _dynunet}
"""3D U-Nets by name: MONAI ``UNet`` (residual units), ``BasicUNet``, ``DynUNet`` (nnU-Net style, the only one
with deep supervision)."""


def build_network(
    name: str,
    num_classes: int,
    channels: Sequence[int],
    strides: Sequence[int],
    dropout: float = 0.0,
    deep_supervision: int = 0,
) -> nn.Module:
    """The registered network with one input channel and :func:`output_channels` outputs (and, in training mode,
    ``deep_supervision`` extra lower-resolution heads stacked on dimension 1)."""
    check_choice("model.net", name, NETWORKS)
    if len(strides) != len(channels) - 1:
        raise MedlitError(f"model.strides needs {len(channels) - 1} entries for {len(channels)} channels")
    if deep_supervision and name != "dynunet":
        raise MedlitError(f"model.deep_supervision needs model.net=dynunet, got model.net={name}")
    if not 0 <= deep_supervision < len(strides):
        raise MedlitError(f"model.deep_supervision must be in 0..{len(strides) - 1}, got {deep_supervision}")
    return NETWORKS[name](output_channels(num_classes), list(channels), list(strides), dropout, deep_supervision)
