"""Low-label train/val/test index lists for the BiSSL study (docs/experiments.md).

Two tasks, both dealt per class with numpy's RandomState(SEED) (one generator, classes 0..9 in order;
each class's indices are shuffled and dealt: the first TRAIN to train, the next VAL to val, the rest
(or the next TEST, when given) to test); every list is sorted (file order):

- digits: data/digits/digits.h5 (1797 images) -> data/digits/splits-lowlabel/ (20 / 30 / rest per class:
  200 / 300 / 1297 images);
- fashion: the Fashion-MNIST TEST part (10 000 images; the pretext entry only saw the TRAIN part)
  -> data/fashion-mnist/splits-lowlabel/ (20 / 30 / 130 per class: 200 / 300 / 1300 images).

The lists are `#split=FILE` files for bissl dataset URIs, one index per line, e.g.
    h5:data/digits/digits.h5#split=data/digits/splits-lowlabel/train.txt
    idx:/usr/share/datasets/fashion-mnist#part=test&split=data/fashion-mnist/splits-lowlabel/train.txt

Usage: python3 tools/make_lowlabel_splits.py [--train 20] [--val 30] [--fashion-test 130] [--seed 0]
"""
import argparse
import gzip
import pathlib

import h5py
import numpy as np

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--train", type=int, default=20, help="train images per class")
ap.add_argument("--val", type=int, default=30, help="val images per class")
ap.add_argument("--fashion-test", type=int, default=130, help="fashion test images per class (digits: the rest)")
ap.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist", help="folder with t10k-labels-idx1-ubyte(.gz)")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
root = pathlib.Path(__file__).resolve().parent.parent / "data"


def deal(labels, test, out, what):
    rng = np.random.RandomState(a.seed)
    splits = {"train": [], "val": [], "test": []}
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        end = a.train + a.val + test if test is not None else len(idx)
        assert end <= len(idx), f"class {c} has {len(idx)} images, fewer than {end}"
        splits["train"] += idx[:a.train].tolist()
        splits["val"] += idx[a.train:a.train + a.val].tolist()
        splits["test"] += idx[a.train + a.val:end].tolist()
    out.mkdir(exist_ok=True)
    for name, idx in splits.items():
        idx = sorted(idx)
        (out / f"{name}.txt").write_text(f"# {what} {name} split (tools/make_lowlabel_splits.py --seed {a.seed}): "
                                         f"{len(idx)} images\n" + "".join(f"{i}\n" for i in idx))
        print(out.relative_to(root.parent), name, len(idx))


deal(h5py.File(root / "digits" / "digits.h5", "r")["labels"][()], None, root / "digits" / "splits-lowlabel", "digits.h5")
path = pathlib.Path(a.fashion) / "t10k-labels-idx1-ubyte.gz"
raw = gzip.open(path).read() if path.exists() else (pathlib.Path(a.fashion) / "t10k-labels-idx1-ubyte").read_bytes()
assert int.from_bytes(raw[:4], "big") == 2049, "not an IDX label file"
labels = np.frombuffer(raw, dtype=np.uint8, offset=8)
assert labels.shape == (int.from_bytes(raw[4:8], "big"),)
deal(labels, a.fashion_test, root / "fashion-mnist" / "splits-lowlabel", "Fashion-MNIST test part")
