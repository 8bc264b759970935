"""Deterministic stratified train/val/test index lists for data/digits/digits.h5.

Per class, the images in file order are dealt out 3:1:1 (positions 0-2 of every five to train, 3 to val,
4 to test), so every split has every digit in the same proportion. The lists are `#split=FILE` files for
bissl dataset URIs (one index per line). Usage: python3 tools/make_digits_splits.py
"""
import pathlib

import h5py

root = pathlib.Path(__file__).resolve().parent.parent / "data" / "digits"
labels = h5py.File(root / "digits.h5", "r")["labels"][()]
splits = {"train": [], "val": [], "test": []}
seen = {}
for i, y in enumerate(labels.tolist()):
    k = seen.get(y, 0)
    seen[y] = k + 1
    splits["train" if k % 5 < 3 else "val" if k % 5 == 3 else "test"].append(i)
out = root / "splits"
out.mkdir(exist_ok=True)
for name, idx in splits.items():
    (out / f"{name}.txt").write_text(
        f"# digits.h5 {name} split (tools/make_digits_splits.py): {len(idx)} images\n" + "".join(f"{i}\n" for i in idx))
    print(name, len(idx))
