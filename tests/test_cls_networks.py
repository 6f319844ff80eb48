"""The backbone factory: unknown names, local weights files, the hub without network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from common.errors import MedlitError
from lesion_cls import networks as networks_module
from lesion_cls.networks import create_backbone


def test_unknown_backbone_suggests_names() -> None:
    with pytest.raises(MedlitError, match="unknown timm model 'resnet5O'.*did you mean.*resnet50"):
        create_backbone("resnet5O", 7)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    source = timm.create_model("resnet10t", num_classes=1000)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "resnet10t.safetensors")
    torch.save(state, tmp_path / "resnet10t.pth")
    for name in ("resnet10t.safetensors", "resnet10t.pth"):
        loaded = create_backbone("resnet10t", 7, pretrained_file=str(tmp_path / name))
        torch.testing.assert_close(loaded.conv1[0].weight, source.conv1[0].weight)
        assert loaded.fc.out_features == 7  # the 1000-class head is replaced
    with pytest.raises(MedlitError, match="pretrained_file: .*missing.pth not found"):
        create_backbone("resnet10t", 7, pretrained_file=str(tmp_path / "missing.pth"))


def test_hub_weights_without_network_fail_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(networks_module, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(networks_module, "_hub_cached_file", lambda name: None)
    start = time.perf_counter()
    with pytest.raises(MedlitError, match=r"pretrained_file=.*or set model.pretrained=false"):
        create_backbone("resnet50", 7, pretrained=True)
    assert time.perf_counter() - start < 5
