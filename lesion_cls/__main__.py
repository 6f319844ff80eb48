"""``python -m lesion_cls fit|validate|test|predict --config experiments/cls_ce.yaml [--key value ...]``."""

from __future__ import annotations

from pathlib import Path

from common.cli import run_cli
from lesion_cls.callbacks import ClassificationOutputs
from lesion_cls.data import HAM10000DataModule
from lesion_cls.model import LesionClassifier


def main(args: list[str] | None = None) -> Path | None:
    """Entry point of ``python -m lesion_cls`` and the ``lesion-cls`` console script; returns the run dir."""
    return run_cli(LesionClassifier, HAM10000DataModule, ClassificationOutputs, args=args)


if __name__ == "__main__":
    main()
