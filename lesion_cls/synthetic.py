"""Generated dermoscopy-like images in the exact HAM10000 layout (the embedded default data), or with your own
class names in the other layouts (:mod:`lesion_cls.labels`).

``python -m lesion_cls.synthetic --out data/generated/ham10000`` writes ``images/ISIC_*.jpg`` and
``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type,age,sex,localization``).
``--classes benign malignant other --layout folders`` writes one folder of images per class instead, and
``--layout csv`` ``labels.csv`` (``image,label,group``) beside ``images/``; class ``k`` looks like HAM10000's
``k``-th class (cycling, with the hue turned for the classes past the seventh). Classes follow
HAM10000's proportions; about a quarter of the lesions have two or three images (shifted, rotated, lit
differently). Each class has its own distribution of colour, size, shape irregularity, border sharpness
and texture (blotches, vessels, scales, dots), with overlap between classes, so a small CNN learns them
clearly above chance but not perfectly. The same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from common.errors import exit_on_error
from lesion_cls import DX_CODES

__all__ = ["HAM_PROPORTIONS", "generate_ham10000", "generate_own_classes"]

HAM_PROPORTIONS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
"""HAM10000's image counts per ``dx``; generated data draws lesions in these proportions."""


@dataclass(frozen=True)
class _Look:
    """Mean appearance of a class; every lesion draws around it."""

    color: tuple[float, float, float]  # RGB in [0, 1]
    radius: float  # fraction of half the shorter side
    irregularity: float  # amplitude of the boundary's Fourier perturbation
    blur: float  # border softness in pixels
    blotches: float  # low-frequency darker/bluish patches
    grain: float  # high-frequency scaly texture
    vessels: int  # red branching lines
    dots: int  # dark red lacunae
    white_center: float  # pale central patch (dermatofibroma)


_LOOKS = {
    "mel": _Look((0.30, 0.18, 0.15), 0.62, 0.16, 2.0, 0.22, 0.03, 0, 0, 0.0),
    "nv": _Look((0.50, 0.33, 0.22), 0.50, 0.05, 3.5, 0.05, 0.02, 0, 0, 0.0),
    "bcc": _Look((0.78, 0.52, 0.52), 0.45, 0.10, 3.0, 0.04, 0.03, 4, 0, 0.0),
    "akiec": _Look((0.74, 0.42, 0.36), 0.46, 0.13, 5.0, 0.03, 0.14, 1, 0, 0.0),
    "bkl": _Look((0.58, 0.44, 0.30), 0.55, 0.09, 1.8, 0.08, 0.08, 0, 0, 0.0),
    "df": _Look((0.58, 0.40, 0.34), 0.34, 0.05, 5.0, 0.02, 0.03, 0, 0, 0.45),
    "vasc": _Look((0.58, 0.16, 0.28), 0.38, 0.06, 1.8, 0.05, 0.02, 0, 7, 0.0),
}
_DX_TYPES = ("histo", "follow_up", "consensus", "confocal")
_SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "scalp", "neck")


def _lesion_params(look: _Look, rng: np.random.Generator) -> dict:
    """One lesion's parameters: the class mean with generous spread (classes overlap)."""
    return {
        "color": np.clip(np.array(look.color) + rng.normal(0, 0.04, 3) + rng.normal(0, 0.07), 0.05, 0.95),
        "radius": float(np.clip(look.radius * rng.lognormal(0, 0.2), 0.15, 0.9)),
        "harmonics": rng.normal(0, look.irregularity, 6) / np.arange(1, 7) ** 0.5,
        "phases": rng.uniform(0, 2 * np.pi, 6),
        "blur": float(max(0.5, look.blur * rng.lognormal(0, 0.3))),
        "blotches": float(max(0.0, look.blotches + rng.normal(0, 0.04))),
        "grain": float(max(0.0, look.grain + rng.normal(0, 0.025))),
        "vessels": int(rng.poisson(look.vessels)),
        "dots": int(rng.poisson(look.dots)),
        "white_center": float(max(0.0, look.white_center + rng.normal(0, 0.1))) if look.white_center else 0.0,
        "skin": np.clip(np.array([0.86, 0.66, 0.56]) + rng.normal(0, 0.04, 3), 0.4, 1.0),
        "seed": int(rng.integers(2**31)),
    }


def _render(params: dict, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One view of a lesion: ``uint8 [H, W, 3]``. ``rng`` varies the view (pose, light, hairs)."""
    h, w = size_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = h / 2 + rng.normal(0, h * 0.05), w / 2 + rng.normal(0, w * 0.05)
    angle = np.arctan2(yy - cy, xx - cx) + rng.uniform(0, 2 * np.pi)
    dist = np.hypot(yy - cy, xx - cx)
    k = np.arange(1, 7)[:, None, None]
    wobble = (params["harmonics"][:, None, None] * np.cos(k * angle + params["phases"][:, None, None])).sum(0)
    radius = params["radius"] * min(h, w) / 2 * rng.uniform(0.92, 1.08) * (1 + wobble)
    mask = 1.0 / (1.0 + np.exp(-(radius - dist) / params["blur"]))

    texture_rng = np.random.default_rng(params["seed"])  # texture belongs to the lesion, not the view
    blotch = gaussian_filter(texture_rng.normal(0, 1, (h, w)), sigma=min(h, w) / 12)
    blotch /= blotch.std() + 1e-8
    grain = gaussian_filter(texture_rng.normal(0, 1, (h, w)), sigma=1.0)
    grain /= grain.std() + 1e-8
    lesion = np.broadcast_to(params["color"], (h, w, 3)).copy()
    lesion -= params["blotches"] * np.clip(blotch, 0, None)[..., None] * np.array([1.0, 0.9, 0.5])
    lesion += params["grain"] * grain[..., None]
    if params["white_center"] > 0:
        center = np.exp(-((dist / (0.45 * radius.mean())) ** 2))[..., None]
        lesion = lesion * (1 - params["white_center"] * center) + params["white_center"] * center * 0.92

    skin = params["skin"] * rng.uniform(0.9, 1.1) + 0.03 * gaussian_filter(rng.normal(0, 1, (h, w)), 3)[..., None]
    image = skin * (1 - mask[..., None]) + lesion * mask[..., None]
    vignette = 1 - 0.35 * (np.hypot((yy - h / 2) / h, (xx - w / 2) / w) * 1.6) ** 3
    image = np.clip(image * vignette[..., None] * rng.uniform(0.9, 1.1), 0, 1)

    canvas = Image.fromarray((image * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    scale = params["radius"] * min(h, w) / 2
    for _ in range(params["vessels"]):  # branching red vessels inside the lesion
        x, y = cx + texture_rng.normal(0, scale / 2), cy + texture_rng.normal(0, scale / 2)
        points = [(x, y)]
        for _ in range(5):
            x, y = x + texture_rng.normal(0, scale / 4), y + texture_rng.normal(0, scale / 4)
            points.append((x, y))
        draw.line(points, fill=(170, 30, 40), width=1)
    for _ in range(params["dots"]):  # lacunae
        x, y = cx + texture_rng.normal(0, scale / 2.5), cy + texture_rng.normal(0, scale / 2.5)
        r = texture_rng.uniform(1.5, 3.5)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(90, 10, 40))
    for _ in range(rng.poisson(0.8)):  # hairs, any class
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.normal(0, w / 2), y0 + rng.normal(0, h / 2)
        draw.line([(x0, y0), (x1, y1)], fill=(40, 30, 25), width=1)
    return np.asarray(canvas)


def generate_ham10000(
    out_dir: Path, n_images: int = 1500, size_hw: tuple[int, int] = (150, 200), seed: int = 0
) -> Path:
    """Write a HAM10000-layout folder; reuse it when a previous call had the same arguments.

    Returns:
        ``out_dir`` (holding ``HAM10000_metadata.csv`` and ``images/``).
    """
    out_dir = Path(out_dir)
    settings = {"n_images": n_images, "size_hw": list(size_hw), "seed": seed, "version": 1}
    stamp = out_dir / "generated.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return out_dir
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    codes = list(HAM_PROPORTIONS)
    weights = np.array([HAM_PROPORTIONS[c] for c in codes], dtype=float)
    rows = []
    lesion_number = 0
    while len(rows) < n_images:
        dx = codes[rng.choice(len(codes), p=weights / weights.sum())]
        params = _lesion_params(_LOOKS[dx], rng)
        n_views = int(rng.choice([1, 2, 3], p=[0.75, 0.18, 0.07]))
        lesion_id = f"HAM_{lesion_number:07d}"
        lesion_number += 1
        meta = {
            "dx_type": str(rng.choice(_DX_TYPES)),
            "age": float(rng.integers(4, 18) * 5),
            "sex": str(rng.choice(["male", "female"])),
            "localization": str(rng.choice(_SITES)),
        }
        for _ in range(min(n_views, n_images - len(rows))):
            image_id = f"ISIC_{len(rows):07d}"
            view = _render(params, size_hw, rng)
            Image.fromarray(view).save(out_dir / "images" / f"{image_id}.jpg", quality=90)
            rows.append({"lesion_id": lesion_id, "image_id": image_id, "dx": dx, **meta})
    pd.DataFrame(rows).to_csv(out_dir / "HAM10000_metadata.csv", index=False)
    stamp.write_text(json.dumps(settings) + "\n")
    return out_dir


def _look_of(k: int) -> _Look:
    """Class ``k``'s look: HAM10000's ``k``-th (in :data:`~lesion_cls.DX_CODES` order), the hue turned each round."""
    look = _LOOKS[DX_CODES[k % len(DX_CODES)]]
    turns = k // len(DX_CODES)
    color = np.roll(np.array(look.color), turns) if turns else np.array(look.color)
    return _Look(tuple(float(c) for c in color), *list(vars(look).values())[1:])


def generate_own_classes(
    out_dir: Path,
    classes: list[str],
    layout: str = "folders",
    n_images: int = 300,
    size_hw: tuple[int, int] = (150, 200),
    seed: int = 0,
) -> Path:
    """Write a dataset with ``classes`` (equally often) in ``layout``: ``folders`` (``<class>/<image>.jpg``) or
    ``csv`` (``labels.csv`` with ``image,label,group`` and ``images/``; a group (lesion) has one to three images).

    Returns:
        ``out_dir``.
    """
    if layout not in ("folders", "csv"):
        raise ValueError(f"layout must be folders or csv, got {layout!r}")
    out_dir, rng, rows = Path(out_dir), np.random.default_rng(seed), []
    while len(rows) < n_images:
        k = int(rng.integers(len(classes)))
        params = _lesion_params(_look_of(k), rng)
        group = f"G{len(rows):05d}"
        views = 1 if layout == "folders" else int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
        for _ in range(min(views, n_images - len(rows))):
            folder = out_dir / (classes[k] if layout == "folders" else "images")
            folder.mkdir(parents=True, exist_ok=True)
            image_id = f"IMG_{len(rows):05d}"
            Image.fromarray(_render(params, size_hw, rng)).save(folder / f"{image_id}.jpg", quality=90)
            rows.append({"image": f"{image_id}.jpg", "label": classes[k], "group": group})
    if layout == "csv":
        pd.DataFrame(rows).to_csv(out_dir / "labels.csv", index=False)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lesion_cls.synthetic``."""
    parser = argparse.ArgumentParser(prog="python -m lesion_cls.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/generated/ham10000"))
    parser.add_argument("--n-images", type=int, default=1500)
    parser.add_argument("--height", type=int, default=150)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", nargs="+", default=None, help="your own class names (default: HAM10000's)")
    parser.add_argument("--layout", choices=("folders", "csv"), default="folders", help="the layout with --classes")
    args = parser.parse_args(argv)
    size = (args.height, args.width)
    if args.classes:
        out = generate_own_classes(args.out, args.classes, args.layout, args.n_images, size, args.seed)
        print(f"{out}: {args.n_images} images of {len(args.classes)} classes ({args.layout})")
        return
    with exit_on_error():
        out = generate_ham10000(args.out, args.n_images, size, args.seed)
    counts = pd.read_csv(out / "HAM10000_metadata.csv")["dx"].value_counts()
    print(f"{out}: " + ", ".join(f"{dx} {counts.get(dx, 0)}" for dx in DX_CODES))


if __name__ == "__main__":
    main()
