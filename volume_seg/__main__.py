"""``python -m volume_seg fit|validate|test|predict --config experiments/seg_dice.yaml [--key value ...]``."""

from __future__ import annotations

from pathlib import Path

from common.entry import run_cli
from common.run_options import Link
from volume_seg.callbacks import SegmentationOutputs
from volume_seg.data import VolumeDataModule
from volume_seg.model import VolumeSegmenter
from volume_seg.transforms import MIRROR_AXES


def _mirror_axes(augment: str) -> list[int]:
    return list(MIRROR_AXES[augment])


# set once, in the data section: the network's outputs follow the classes, the sliding window the patch,
# the class names of the outputs follow the data's; test-time flips follow the training augmentation's
# mirrorings when the model is trained (test and predict keep the checkpoint's, or --model.tta_axes)
LINKS = (
    Link("data.num_classes", "model.num_classes"),
    Link("data.patch_size", "model.roi_size"),
    Link("data.class_names", "model.class_names"),
    Link("data.augment", "model.tta_axes", compute=_mirror_axes, subcommands=("fit", "validate")),
)


def main(args: list[str] | None = None) -> Path | None:
    """Entry point of ``python -m volume_seg``; returns the run dir (``None`` when nothing ran, e.g. ``--help``)."""
    return run_cli(
        VolumeSegmenter, VolumeDataModule, SegmentationOutputs, LINKS, report_module="volume_seg.report", args=args
    )


def cli() -> None:
    """The ``volume-seg`` console script: :func:`main` with exit status 0 (a console script exits with what its
    function returns, and a run dir is not a status)."""
    main()


if __name__ == "__main__":
    main()
