"""`bissl data info` against independent readings of the same files (numpy, gzip, h5py, hashlib, Pillow)."""
import gzip
import hashlib
import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def fingerprint(records, split=None):
    """Sources/Datasets/Fingerprint.swift: SHA-256 of (name, 0, u64le size, bytes) per file, then #split."""
    h = hashlib.sha256()
    for name, data in records + ([("#split", split)] if split is not None else []):
        h.update(name.encode() + b"\0" + struct.pack("<Q", len(data)) + data)
    return h.hexdigest()


def info(bissl, uri, *extra):
    return json.loads(bissl("data", "info", uri, "--json", *extra).stdout)


@pytest.mark.skipif(not FASHION.exists(), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("part,prefix", [("train", "train"), ("test", "t10k")])
def test_fashion_mnist_in_place(bissl, part, prefix):
    raw_x = (FASHION / f"{prefix}-images-idx3-ubyte.gz").read_bytes()
    raw_y = (FASHION / f"{prefix}-labels-idx1-ubyte.gz").read_bytes()
    labels = np.frombuffer(gzip.decompress(raw_y)[8:], dtype=np.uint8)
    r = info(bissl, f"idx:{FASHION}#part={part}")
    assert r["count"] == len(labels)
    assert [c["count"] for c in r["classes"]] == np.bincount(labels).tolist()
    assert r["sizes"] == [{"height": 28, "width": 28, "count": len(labels)}]
    assert r["sourceChannels"] == {"gray": len(labels)}
    assert r["channels"] == 3
    assert r["fingerprint"] == fingerprint([(f"{prefix}-images-idx3-ubyte.gz", raw_x), (f"{prefix}-labels-idx1-ubyte.gz", raw_y)])


def test_fashion_mnist_split(bissl, tmp_path):
    if not FASHION.exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    raw_y = (FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()
    labels = np.frombuffer(gzip.decompress(raw_y)[8:], dtype=np.uint8)
    idx = np.arange(0, 10000, 7)
    split = tmp_path / "every7.txt"
    split.write_text("\n".join(map(str, idx)) + "\n")
    r = info(bissl, f"idx:{FASHION}#test&split={split}")
    assert r["count"] == len(idx)
    assert [c["count"] for c in r["classes"]] == np.bincount(labels[idx], minlength=10).tolist()
    raw_x = (FASHION / "t10k-images-idx3-ubyte.gz").read_bytes()
    assert r["fingerprint"] == fingerprint([("t10k-images-idx3-ubyte.gz", raw_x), ("t10k-labels-idx1-ubyte.gz", raw_y)], split.read_bytes())


def test_committed_digits(bissl):
    path = REPO / "data/digits/digits.h5"
    with h5py.File(path, "r") as f:
        labels = f["labels"][()]
        images = f["images"][()]
    r = info(bissl, f"h5:{path}")
    assert r["count"] == 1797 == len(labels) == len(images)
    assert [c["name"] for c in r["classes"]] == [str(k) for k in range(10)]
    assert [c["count"] for c in r["classes"]] == np.bincount(labels).tolist()
    assert r["sizes"] == [{"height": 8, "width": 8, "count": 1797}]
    assert r["fingerprint"] == fingerprint([("digits.h5", path.read_bytes())])


def test_image_folder_written_by_pillow(bissl, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    made = {"b_cls": [], "a_cls": []}
    for cls, n in [("b_cls", 3), ("a_cls", 2)]:
        (tmp_path / cls).mkdir()
        for k in range(n):
            arr = rng.integers(0, 256, size=(5 + k, 7, 3), dtype=np.uint8)
            name = f"{k}.png" if k % 2 == 0 else f"{k}.jpg"
            Image.fromarray(arr, "RGB").save(tmp_path / cls / name)
            made[cls].append(name)
    (tmp_path / "a_cls" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    proc = bissl("data", "info", f"folder:{tmp_path}", "--json")
    r = json.loads(proc.stdout)
    assert [c["name"] for c in r["classes"]] == ["a_cls", "b_cls"]
    assert [c["count"] for c in r["classes"]] == [2, 3]
    assert sorted((s["height"], s["width"], s["count"]) for s in r["sizes"]) == [(5, 7, 2), (6, 7, 2), (7, 7, 1)]
    assert len(r["skipped"]) == 1 and r["skipped"][0]["file"].endswith("a_cls/broken.png")
    assert "skipped 1 image(s)" in proc.stderr
    order = [f"a_cls/{n}" for n in sorted(made["a_cls"])] + [f"b_cls/{n}" for n in sorted(made["b_cls"])]
    assert r["fingerprint"] == fingerprint([(rel, (tmp_path / rel).read_bytes()) for rel in order])
    strict = bissl("data", "info", f"folder:{tmp_path}", "--strict", check=False)
    assert strict.returncode != 0
    assert strict.stderr.count("\n") == 1 and strict.stderr.startswith("error: ") and "broken.png" in strict.stderr


@pytest.mark.parametrize("uri,words", [
    ("idx:/nonexistent/folder", "no such folder"),
    ("png:/x", "unknown dataset scheme"),
    ("h5:{fixtures}/h5/mismatch.h5", "3 images but 2 labels"),
    ("idx:{fixtures}/idx#split={fixtures}/splits/out_of_range.txt", "out of range"),
])
def test_bad_input_is_one_error_line(bissl, uri, words):
    uri = uri.format(fixtures=REPO / "Tests/Fixtures/datasets")
    proc = bissl("data", "info", uri, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and words in proc.stderr
