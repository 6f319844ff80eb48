"""In-process ensembles (:mod:`common.ensemble`): the mean of the members' probabilities computed by hand (with and
without flips), one member at a time, an ensemble of one equal to the model's own test, the tasks' saved-probability
ensembles equal to the in-process one, and the mixes that are refused with one line. The tasks' saved-probability
ensembles and out-of-fold pools on their own: ``test_cls_ensemble.py``, ``test_seg_ensemble.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from common.ensemble import EnsembleMembers, find_members
from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main as cls_main
from lesion_cls.ensemble import ensemble_runs as cls_ensemble_runs
from lesion_cls.model import FLIPS, LesionClassifier
from volume_seg.__main__ import main as seg_main
from volume_seg.ensemble import ensemble_runs as seg_ensemble_runs
from volume_seg.model import VolumeSegmenter, mirrorings


def _segmenter(seed: int, **settings: object) -> VolumeSegmenter:
    torch.manual_seed(seed)
    model = VolumeSegmenter(channels=[4, 8], strides=[2], roi_size=[16, 16, 16], sw_batch_size=1, **settings)
    return model.eval()


def _classifier(seed: int, **settings: object) -> LesionClassifier:
    torch.manual_seed(seed)
    return LesionClassifier(backbone="resnet10t", **settings).eval()


# --- the mean by hand -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flips", [False, True])
def test_segmentation_ensemble_is_the_mean_of_member_probabilities(flips: bool) -> None:
    members = [_segmenter(1, tta_axes=[0, 1]), _segmenter(2, tta_axes=[2])]
    ensemble = _segmenter(3)
    ensemble.use_ensemble(members)
    volume = torch.rand(1, 1, 20, 18, 16)
    with torch.no_grad():
        hand = []
        for member in members:
            flip_sets = mirrorings(member.hparams.tta_axes) if flips else [()]
            each = [torch.sigmoid(member.predict_volume(volume.flip(d)).float()).flip(d) for d in flip_sets]
            hand.append(torch.stack(each).mean(dim=0))
        expected = (hand[0] + hand[1]) / 2
        probabilities, logits = ensemble.predict_probabilities(volume, flips)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    assert torch.allclose(torch.sigmoid(logits), probabilities, atol=1e-5)  # the loss sees the ensemble's p
    assert not torch.allclose(hand[0], hand[1], atol=1e-3)  # two different members: the mean is not either one
    mask = ensemble.to_mask(probabilities)
    assert torch.equal(mask, (expected > 0.5).long())


@pytest.mark.parametrize(("flips", "offsets"), [(False, None), (True, None), (True, [0.3, 0, -0.2, 0.5, 0, 1.5, -1])])
def test_classification_ensemble_is_the_mean_then_the_decision_tau(flips: bool, offsets: list | None) -> None:
    members = [_classifier(1), _classifier(2)]
    frequencies = [0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02]
    settings = {"decision_tau": 0.5, "decision_offsets": offsets, "class_frequencies": frequencies}
    ensemble = _classifier(3, tta_flips=flips, **settings)
    ensemble.use_ensemble(members)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        hand = []
        for member in members:
            flip_sets = FLIPS if flips else ((),)
            hand.append(torch.stack([member.net(images.flip(d)).softmax(dim=1) for d in flip_sets]).mean(dim=0))
        mean = (hand[0] + hand[1]) / 2
        shift = torch.tensor(offsets or [0.0] * 7)
        expected = (mean.log() - 0.5 * torch.log(torch.tensor(frequencies) / sum(frequencies)) + shift).softmax(dim=1)
        raw, _ = ensemble.raw_probabilities(images)
        decided, _ = ensemble.probabilities(images)
    assert torch.allclose(raw, mean, atol=1e-6)
    assert torch.allclose(decided, expected, atol=1e-5)


def test_classification_ensemble_needs_a_decision_tau() -> None:
    with pytest.raises(MedlitError, match="an ensemble needs one decision τ"):
        _classifier(3, decision_tau=None, class_frequencies=[1.0] * 7).use_ensemble([_classifier(1)])


# --- one member at a time ------------------------------------------------------------------------------------
class _Recorder(torch.nn.Module):
    """A member that records, at each prediction, the dtype of every member's weights (the dtype stands in for the
    device: the test machine has no accelerator, and the move is the same ``Module.to``)."""

    def __init__(self, name: str, log: list[tuple[str, list[torch.dtype]]], everyone: list[torch.nn.Module]) -> None:
        super().__init__()
        self.name, self.log, self.everyone = name, log, everyone
        self.weight = torch.nn.Parameter(torch.full((2,), float(len(everyone) + 1)))

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, [m.weight.dtype for m in self.everyone]))
        return batch * self.weight


def test_one_at_a_time_moves_each_member_for_its_turn_only() -> None:
    log: list[tuple[str, list[torch.dtype]]] = []
    everyone: list[torch.nn.Module] = []
    for name in "abc":
        everyone.append(_Recorder(name, log, everyone))
    members = EnsembleMembers(everyone, one_at_a_time=True)
    owner = torch.nn.Module()
    owner.members = members
    owner.to(torch.float64)  # what Lightning does to the ensemble module: the members stay where they were
    assert all(m.weight.dtype == torch.float32 for m in everyone) and not list(owner.parameters())
    batch = torch.ones(2, dtype=torch.float64)
    mean = members.mean(lambda m: m.predict(batch), batch)
    f32, f64 = torch.float32, torch.float64
    assert log == [("a", [f64, f32, f32]), ("b", [f32, f64, f32]), ("c", [f32, f32, f64])]
    assert all(m.weight.dtype == f32 for m in everyone)  # back where they were
    assert torch.equal(mean, torch.full((2,), 2.0, dtype=f64))  # (1 + 2 + 3) / 3
    assert len(list(members.member_parameters())) == 3
    together = EnsembleMembers(everyone)
    owner.members = together
    owner.to(torch.float64)  # together: they move with the ensemble
    assert all(m.weight.dtype == f64 for m in everyone) and len(list(owner.parameters())) == 3


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_one_at_a_time_gives_the_same_probabilities_as_together(task: str) -> None:
    if task == "segmentation":
        make = _segmenter
        batch = torch.rand(1, 1, 20, 18, 16)
        settings: dict = {}
    else:
        make = _classifier
        batch = torch.rand(3, 3, 32, 32)
        settings = {"decision_tau": 0.0, "class_frequencies": [1.0] * 7, "tta_flips": True}
    together, apart = make(3, **settings), make(3, **settings)
    together.use_ensemble([make(1), make(2)])
    apart.use_ensemble([make(1), make(2)], one_at_a_time=True)
    assert apart.members.one_at_a_time and not together.members.one_at_a_time
    with torch.no_grad():
        if task == "segmentation":
            expected, got = together.predict_probabilities(batch, True)[0], apart.predict_probabilities(batch, True)[0]
        else:
            expected, got = together.raw_probabilities(batch)[0], apart.raw_probabilities(batch)[0]
    assert torch.equal(expected, got)


# --- refused mixes ---------------------------------------------------------------------------------------------
def _checkpoint(path: Path, model: dict, data: dict) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": model, "datamodule_hyper_parameters": data}, path)
    return path


def test_members_of_another_task_patch_size_or_classes_are_refused(tmp_path: Path) -> None:
    seg = {"num_classes": 2, "class_names": None, "roi_size": [16, 16, 16], "net": "unet"}
    data = {"normalize": "zscore", "spacing": None}
    first = _checkpoint(tmp_path / "a.ckpt", seg, data)
    assert [m.checkpoint for m in find_members([str(first)], VolumeSegmenter)] == [first]
    other_patch = _checkpoint(tmp_path / "b.ckpt", {**seg, "roi_size": [32, 32, 16]}, data)
    with pytest.raises(MedlitError, match=r"b.ckpt: model.roi_size is \[32, 32, 16\], but \[16, 16, 16\]"):
        find_members([str(first), str(other_patch)], VolumeSegmenter)
    other_classes = _checkpoint(tmp_path / "c.ckpt", {**seg, "num_classes": 3}, data)
    with pytest.raises(MedlitError, match="c.ckpt: model.num_classes is 3, but 2"):
        find_members([str(first), str(other_classes)], VolumeSegmenter)
    with pytest.raises(MedlitError, match="trained with another task's model .*not LesionClassifier's"):
        find_members([str(first)], LesionClassifier)
    cls = _checkpoint(
        tmp_path / "d.ckpt", {"backbone": "resnet18"}, {"image_size": [112, 150], "normalize": "imagenet"}
    )
    small = _checkpoint(tmp_path / "e.ckpt", {"backbone": "resnet18"}, {"image_size": 64, "normalize": "imagenet"})
    with pytest.raises(MedlitError, match="e.ckpt: data.image_size is 64, but"):
        find_members([str(cls), str(small)], LesionClassifier)
    with pytest.raises(MedlitError, match="no such run dir or checkpoint file"):
        find_members([str(tmp_path / "missing")], LesionClassifier)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(MedlitError, match="a run dir without a checkpoint"):
        find_members([str(tmp_path / "empty_run")], LesionClassifier)
    (tmp_path / "broken.ckpt").write_text("not a checkpoint")
    with pytest.raises(MedlitError, match="broken.ckpt: not a readable checkpoint .*cut short"):
        find_members([str(tmp_path / "broken.ckpt")], LesionClassifier)


def test_the_cli_refuses_a_mix_with_one_line(tiny_la: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    seg = {"num_classes": 2, "class_names": None, "roi_size": [16, 16, 16]}
    first = _checkpoint(tmp_path / "a.ckpt", seg, {"normalize": "zscore"})
    other = _checkpoint(tmp_path / "b.ckpt", {**seg, "roi_size": [8, 8, 8]}, {"normalize": "zscore"})
    runs = tmp_path / "runs"
    for extra in (["--ensemble", str(first), str(other)], ["--ensemble", str(first), "--ckpt_path", str(first)]):
        with pytest.raises(SystemExit) as exit_info:
            seg_main(["test", "--data.root", str(tiny_la), "--run.root", str(runs), "--run.wandb", "off", *extra])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not runs.exists()  # refused before a run dir is made


# --- through the CLI ---------------------------------------------------------------------------------------------
def _test(main: Callable[[list[str]], Path | None], config: Path, runs: Path, *extra: str) -> Path:
    """``test`` with a fold's config in a new run dir (the config names the fold's own ``run.dir``)."""
    target = runs / f"test{len(list(runs.glob('test*')))}"
    run_dir = main(["test", "--config", str(config), "--run.dir", str(target), "--run.wandb", "off", *extra])
    assert run_dir is not None
    return run_dir


@pytest.mark.slow
@pytest.mark.e2e
def test_segmentation_ensemble_of_one_equals_the_models_own_test(seg_cv: Path, tmp_path: Path) -> None:
    fold = seg_cv / "runs" / "fold0"
    alone = json.loads((fold / "metrics.json").read_text())
    run = _test(seg_main, fold / "config.yaml", tmp_path, "--ensemble", str(fold), "--outputs.views_3d", "false")
    one = json.loads((run / "metrics.json").read_text())
    for metric in ("dice", "jaccard", "hd95", "asd"):
        assert one[metric]["mean"] == pytest.approx(alone[metric]["mean"], abs=1e-9), metric
    assert one["loss"] == pytest.approx(alone["loss"], rel=1e-4)  # through the logit of the sigmoid
    for path in (fold / "predictions").glob("*.nii.gz"):
        assert np.array_equal(nib.load(path).get_fdata(), nib.load(run / "predictions" / path.name).get_fdata())


@pytest.mark.slow
@pytest.mark.e2e
def test_classification_ensemble_of_one_equals_the_models_own_test(cls_cv: Path, tmp_path: Path) -> None:
    fold = cls_cv / "runs" / "fold0"
    tau = json.loads((fold / "metrics.json").read_text())["decision_tau"]  # the one fold 0 chose on validation
    config = fold / "config.yaml"
    alone = _test(
        cls_main,
        config,
        tmp_path,
        "--ckpt_path",
        str(fold / "checkpoints" / "last.ckpt"),
        "--model.decision_tau",
        str(tau),
    )
    one = _test(
        cls_main,
        config,
        tmp_path,
        "--ensemble",
        str(fold / "checkpoints" / "last.ckpt"),
        "--model.decision_tau",
        str(tau),
    )
    a, b = (pd.read_csv(d / "predictions.csv") for d in (alone, one))
    assert list(a["image"]) == list(b["image"])
    assert np.abs(a[list(CLASS_NAMES)].to_numpy() - b[list(CLASS_NAMES)].to_numpy()).max() < 2e-6
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (alone, one))
    for metric in ("accuracy", "balanced_accuracy", "auc_macro", "ece"):
        assert metrics_b[metric] == pytest.approx(metrics_a[metric], abs=1e-5), metric
    # the loss differs by design with flips: an ensemble's loss is that of its (flip-averaged) probabilities, a
    # single model's that of its unflipped logits
    assert metrics_b["loss"] == pytest.approx(metrics_a["loss"], rel=0.05)


@pytest.mark.slow
@pytest.mark.e2e
def test_classification_ensemble_one_at_a_time_through_the_cli(
    cls_cv: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--ensemble_one_at_a_time`` gives the cross-validation's own ensemble test (members together), and is
    refused with one line without ``--ensemble``."""
    decided = json.loads((cls_cv / "oof" / "decisions.json").read_text())["args"]  # the cross-validation's own
    folds = [str(cls_cv / "runs" / f"fold{k}") for k in (0, 1)]
    config = cls_cv / "runs" / "fold0" / "config.yaml"
    options = ("--ensemble", *folds, *decided, "--ensemble_one_at_a_time", "true")
    run = _test(cls_main, config, tmp_path, *options)
    together = pd.read_csv(cls_cv / "ensemble" / "predictions.csv", dtype={"image": str})
    apart = pd.read_csv(run / "predictions.csv", dtype={"image": str})
    assert list(together["image"]) == list(apart["image"])
    assert np.abs(together[list(CLASS_NAMES)].to_numpy() - apart[list(CLASS_NAMES)].to_numpy()).max() < 1e-6
    info = json.loads((run / "run_info.json").read_text())
    assert [m["given"] for m in info["ensemble"]] == folds
    with pytest.raises(SystemExit) as exit_info:
        _test(cls_main, config, tmp_path / "refused", "--ensemble_one_at_a_time", "true")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "only applies with --ensemble" in err, err
    assert not (tmp_path / "refused").exists()


def _tested_with_probabilities(
    main: Callable[[list[str]], Path | None], cv_dir: Path, runs: Path, *extra: str
) -> list[Path]:
    """Each fold model of a cross-validation tested again, saving its probabilities."""
    saved = []
    for k in (0, 1):
        fold = cv_dir / "runs" / f"fold{k}"
        checkpoint = json.loads((fold / "run_info.json").read_text())["tested_checkpoint"]
        options = ("--ckpt_path", checkpoint, "--outputs.save_probabilities", "true", *extra)
        saved.append(_test(main, fold / "config.yaml", runs, *options))
    return saved


@pytest.mark.e2e
def test_segmentation_saved_probability_ensemble_equals_the_in_process_one(seg_cv: Path, tmp_path: Path) -> None:
    """Each fold model tested with its probabilities saved, then ``volume_seg.ensemble`` over them, against the
    cross-validation's in-process ensemble of the same models (same post-processing): float16 files move a voxel
    only where the mean probability is within float16 rounding of 0.5."""
    keep = json.loads((seg_cv / "oof" / "decisions.json").read_text())["values"]["largest_component"]
    saved = _tested_with_probabilities(seg_main, seg_cv, tmp_path, "--outputs.views_3d", "false")
    out = tmp_path / "offline"
    metrics = seg_ensemble_runs(saved, out, largest_component=keep, files={"save_masks": True})
    in_process = seg_cv / "ensemble"
    expected = json.loads((in_process / "metrics.json").read_text())
    assert metrics["dice"]["mean"] == pytest.approx(expected["dice"]["mean"], abs=1e-3)
    differing = total = 0
    for path in (in_process / "predictions").glob("*.nii.gz"):
        a, b = nib.load(path).get_fdata(), nib.load(out / "predictions" / path.name).get_fdata()
        differing, total = differing + int((a != b).sum()), total + a.size
    assert total > 0 and differing / total < 1e-3
    info = json.loads((out / "run_info.json").read_text())
    assert [m["given"] for m in info["ensemble"]] == [str(s) for s in saved]
    with pytest.raises(MedlitError, match="exists and is not empty"):
        seg_ensemble_runs(saved, out)


@pytest.mark.e2e
def test_classification_saved_probability_ensemble_equals_the_in_process_one(cls_cv: Path, tmp_path: Path) -> None:
    decided = json.loads((cls_cv / "oof" / "decisions.json").read_text())["values"]
    saved = _tested_with_probabilities(cls_main, cls_cv, tmp_path)
    metrics = cls_ensemble_runs(saved, tmp_path / "offline", decided["decision_tau"], decided["decision_offsets"])
    in_process = pd.read_csv(cls_cv / "ensemble" / "predictions.csv", dtype={"image": str})
    offline = pd.read_csv(tmp_path / "offline" / "predictions.csv", dtype={"image": str}).set_index("image")
    offline = offline.loc[in_process["image"]]
    assert np.abs(offline[list(CLASS_NAMES)].to_numpy() - in_process[list(CLASS_NAMES)].to_numpy()).max() < 1e-5
    expected = json.loads((cls_cv / "ensemble" / "metrics.json").read_text())
    assert metrics["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-9)
    raw = pd.read_csv(saved[0] / "probabilities.csv", dtype={"image": str})
    assert {"lesion_id", "label"} <= set(raw.columns) and np.allclose(raw[list(CLASS_NAMES)].sum(axis=1), 1, atol=1e-4)


def test_both_tasks_satisfy_the_ensemble_contracts() -> None:
    import lesion_cls.ensemble
    import volume_seg.ensemble
    from common.contracts import EnsembleModule, TaskEnsemble, check_contract

    for model_class in (LesionClassifier, VolumeSegmenter):
        check_contract(model_class, EnsembleModule, "model class")
    for module in (lesion_cls.ensemble, volume_seg.ensemble):
        check_contract(module, TaskEnsemble, "ensemble module")

    class NoEnsemble:
        ensemble_keys = ()

    with pytest.raises(MedlitError, match="missing 'use_ensemble'"):
        check_contract(NoEnsemble, EnsembleModule, "model class")


@pytest.mark.parametrize("module", ["lesion_cls.ensemble", "volume_seg.ensemble"])
def test_the_saved_probability_commands_refuse_with_one_line(
    module: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "no_run"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "no_run: not a" in err
    assert not (tmp_path / "out").exists()
