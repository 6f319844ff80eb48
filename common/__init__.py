"""Pieces shared by `lesion_cls` and `volume_seg`: CLI, loggers, callbacks, plots, report, sweeps."""
