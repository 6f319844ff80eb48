"""Backbone factory (local weights, offline hub), the LightningModule and Grad-CAM."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from common.errors import MedlitError
from lesion_cls import model as model_module
from lesion_cls.model import LesionClassifier, create_backbone
from lesion_cls.viz import gradcam_maps


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
    monkeypatch.setattr(model_module, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(model_module, "_hub_cached_file", lambda name: None)
    start = time.perf_counter()
    with pytest.raises(MedlitError, match=r"pretrained_file=.*or set model.pretrained=false"):
        create_backbone("resnet50", 7, pretrained=True)
    assert time.perf_counter() - start < 5


def test_module_step_and_optimizer() -> None:
    module = LesionClassifier(backbone="resnet10t", loss="ce_focal", scheduler="cosine").eval()
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 6]), "image_id": list("abcd")}
    out = module.test_step(batch, 0)
    assert out["probs"].shape == (4, 7) and out["image_id"] == list("abcd")
    torch.testing.assert_close(out["probs"].sum(dim=1), torch.ones(4))
    # per-image losses: their mean is the batch criterion (no class weights)
    assert out["loss"].shape == (4,) and (out["loss"] > 0).all()
    with torch.no_grad():
        torch.testing.assert_close(out["loss"].mean(), module.criterion(module(batch["image"]), batch["label"]))
    with pytest.raises(MedlitError, match="unknown model.scheduler 'linear'"):
        LesionClassifier(backbone="resnet10t", scheduler="linear")


def test_gradcam_has_input_size_and_depends_on_class() -> None:
    torch.manual_seed(0)
    module = LesionClassifier(backbone="resnet10t").eval()
    images = torch.randn(2, 3, 48, 64)
    maps = {c: gradcam_maps(module, module.gradcam_layer(), images, c) for c in (0, 3)}
    assert maps[0].shape == (2, 48, 64)
    assert maps[0].min() >= 0.0 and maps[0].max() <= 1.0 + 1e-6
    assert abs(maps[0] - maps[3]).max() > 0.1


def test_channels_last_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    plain = LesionClassifier(backbone="resnet10t").eval()
    channels_last = LesionClassifier(backbone="resnet10t", channels_last=True).eval()
    channels_last.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 48, 64)
    weight = next(p for p in channels_last.net.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(channels_last(images), plain(images), rtol=1e-4, atol=1e-5)
