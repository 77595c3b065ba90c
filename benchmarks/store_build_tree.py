"""1,000 ImageNet-like JPEGs (400-500 x 350-375, quality 90) in train/ (10 classes x 90) and val/ (10 x 10)."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def photo(rng, w, h):
    # a smooth random field (upsampled 12x9 colour grid) plus texture: ~110 KB, like ImageNet JPEGs
    small = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.float32)
    fine = np.asarray(
        Image.fromarray(rng.integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR),
        dtype=np.float32,
    )
    img = 0.3 * img + 0.7 * fine + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for split, per in (("train", 90), ("val", 10)):
    for c in range(10):
        d = root / split / f"n{c:08d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            w, h = int(rng.integers(400, 501)), int(rng.integers(350, 376))
            photo(rng, w, h).save(d / f"img_{i:04d}.JPEG", quality=90)
