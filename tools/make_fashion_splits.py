"""Deterministic stratified train/val/test index lists over the Fashion-MNIST TEST part (10 000 images).

The BiSSL study's pretext entry theta_0 is SimCLR-pretrained on the Fashion-MNIST TRAIN part, so the
downstream task uses only images of the official test part, which the pretext never saw. Per class, the
test-part indices of that class are shuffled with numpy's RandomState(SEED) (one generator, classes
0..9 in order) and dealt out: the first TRAIN go to train, the next VAL to val, the next TEST to test.
Each list is sorted (file order), so the splits do not depend on the order of dealing. The lists are
`#split=FILE` files for bissl dataset URIs over the test part, one index per line:

    idx:/usr/share/datasets/fashion-mnist#part=test&split=data/fashion-mnist/splits/train.txt

Usage: python3 tools/make_fashion_splits.py [--train 200] [--val 100] [--test 200] [--seed 0]
(per-class counts; defaults 200/100/200, i.e. 2000/1000/2000 images).
"""
import argparse
import gzip
import pathlib

import numpy as np

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder with t10k-labels-idx1-ubyte(.gz)")
ap.add_argument("--train", type=int, default=200, help="train images per class")
ap.add_argument("--val", type=int, default=100, help="val images per class")
ap.add_argument("--test", type=int, default=200, help="test images per class")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

data = pathlib.Path(a.data)
path = data / "t10k-labels-idx1-ubyte.gz"
raw = gzip.open(path).read() if path.exists() else (data / "t10k-labels-idx1-ubyte").read_bytes()
assert int.from_bytes(raw[:4], "big") == 2049, "not an IDX label file"
count = int.from_bytes(raw[4:8], "big")
labels = np.frombuffer(raw, dtype=np.uint8, offset=8)
assert labels.shape == (count,)

rng = np.random.RandomState(a.seed)
splits = {"train": [], "val": [], "test": []}
for c in range(int(labels.max()) + 1):
    idx = np.flatnonzero(labels == c)
    need = a.train + a.val + a.test
    assert need <= len(idx), f"class {c} has {len(idx)} images, {need} asked"
    perm = idx[rng.permutation(len(idx))]
    splits["train"] += perm[:a.train].tolist()
    splits["val"] += perm[a.train:a.train + a.val].tolist()
    splits["test"] += perm[a.train + a.val:need].tolist()

out = pathlib.Path(__file__).resolve().parent.parent / "data" / "fashion-mnist" / "splits"
out.mkdir(parents=True, exist_ok=True)
for name, idx in splits.items():
    idx = sorted(idx)
    (out / f"{name}.txt").write_text(
        f"# fashion-mnist test-part {name} split (tools/make_fashion_splits.py --train {a.train} --val {a.val} "
        f"--test {a.test} --seed {a.seed}): {len(idx)} images\n" + "".join(f"{i}\n" for i in idx))
    print(name, len(idx))
