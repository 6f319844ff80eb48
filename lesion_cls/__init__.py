"""Skin-lesion classification on HAM10000 / ISIC 2018 Task 3 (7 classes: MEL, NV, BCC, AKIEC, BKL, DF, VASC)."""

CLASS_NAMES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
"""The fixed class order everywhere: outputs, reports, predictions.csv columns (ISIC 2018 submission order)."""

DX_CODES: tuple[str, ...] = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")
"""HAM10000 ``dx`` codes, in the order of :data:`CLASS_NAMES`."""

TASK = "classification"
"""The task name the classifier declares; its report sections are registered under it (``report.py``)."""
