"""The classifier's network by name: any timm backbone, from scratch, from the hub or from a local weights file."""

from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from typing import Any

import timm
from torch import nn

from common.errors import MedlitError

__all__ = ["create_backbone"]

_HUB_HOST = ("huggingface.co", 443)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # behind a proxy a direct probe says nothing: let the hub client try
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _hub_cached_file(name: str) -> str | None:
    """The backbone's default weights if the Hugging Face cache already holds them."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    return None


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    drop_rate: float = 0.0,
) -> nn.Module:
    """A timm model with a fresh ``num_classes`` head.

    Weights: ``pretrained_file`` (a local ``.safetensors``/``.pth`` state dict, loaded through timm's
    ``pretrained_cfg_overlay``), else the hub's default weights when ``pretrained`` (from the local cache
    when present), else random initialisation. With no network and no cached copy, fails at once with a
    :class:`MedlitError` instead of timm's minute of retries.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
        raise MedlitError(f"model.backbone: unknown timm model '{name}'{hint}")
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": drop_rate}
    if pretrained_file:
        path = Path(pretrained_file)
        if not path.is_file():
            raise MedlitError(f"model.pretrained_file: {path} not found")
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except (RuntimeError, KeyError, ValueError) as err:
            raise MedlitError(f"model.pretrained_file: {path} does not fit '{name}' ({str(err)[:200]})") from None
    if pretrained:
        cached = _hub_cached_file(name)
        if cached:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs)
        if not _hub_reachable():
            raise MedlitError(
                f"model.pretrained=true needs the hub weights of '{name}', but huggingface.co cannot be reached; "
                "pass model.pretrained_file=/path/to/weights.safetensors (or .pth), or set model.pretrained=false"
            )
    return timm.create_model(name, pretrained=pretrained, **kwargs)
