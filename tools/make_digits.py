"""Convert scikit-learn's 8x8 handwritten digits into data/digits/digits.h5 (bissl `h5:` layout).

Source: sklearn.datasets.load_digits() (1797 images, 8x8, values 0..16, labels 0..9), i.e. the
test part of the UCI "Optical Recognition of Handwritten Digits" data set, shipped inside the
scikit-learn package (BSD-3-Clause). Pixel values are rescaled to uint8 as round(v * 255 / 16)
so that 0 stays 0 and 16 becomes 255. Layout written:
  images  uint8  (1797, 8, 8, 1)   gray
  labels  int64  (1797,)           0..9
  classes string (10,)             "0".."9"
Run: python3 tools/make_digits.py [OUT]   (default data/digits/digits.h5)
"""
import sys
from pathlib import Path

import h5py
import numpy as np
from sklearn.datasets import load_digits


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "data/digits/digits.h5"
    digits = load_digits()
    values = digits.images  # float64 (1797, 8, 8), integers 0..16
    assert values.min() >= 0 and values.max() <= 16 and np.all(values == np.round(values))
    images = np.round(values * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("labels", data=labels)
        f.create_dataset("classes", data=np.array([str(k) for k in range(10)], dtype=h5py.string_dtype()))
        f.attrs["source"] = "sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits, test part)"
        f.attrs["pixel_scale"] = "uint8 = round(v * 255 / 16), v in 0..16"
    tmp.replace(out)
    print(f"{out}: {len(labels)} images, counts per class {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    main()
