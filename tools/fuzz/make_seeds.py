"""Seed corpora for the fuzz targets (docs/fuzzing.md), built from the committed test fixtures (files
under 64 KB) plus a few inputs generated here with the Python standard library and numpy.

Writes OUT/<target>/ for every target of tools/fuzz/BisslFuzz/Harness.swift.
Run: python3 tools/fuzz/make_seeds.py OUT
"""
import io
import json
import pickle
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "Tests" / "Fixtures"
LIMIT = 64 * 1024


def small(pattern):
    return sorted(p for p in FIX.rglob(pattern) if p.is_file() and p.stat().st_size <= LIMIT)


def main(out: Path):
    if out.exists():
        shutil.rmtree(out)
    seeds = {}

    def add(target, name, data):
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
        seeds[target] = seeds.get(target, 0) + 1

    def copy(target, paths):
        for p in paths:
            add(target, "_".join(p.relative_to(FIX).parts), p.read_bytes())

    pths = small("*.pth") + small("*.pt")
    copy("pth", pths)
    copy("zip", [p for p in pths if p.read_bytes()[:2] == b"PK"] + small("*.npz"))
    copy("pickle", small("*.pkl"))
    for p in pths:
        if p.read_bytes()[:2] == b"PK":
            try:
                with zipfile.ZipFile(p) as z:
                    for n in z.namelist():
                        if n.endswith("data.pkl"):
                            add("pickle", p.stem + "_data.pkl", z.read(n))
            except zipfile.BadZipFile:
                pass
    value = {"a": (1, 2.5, "x", b"y", None, True), "b": [list(range(5)), {"c": -7}]}
    for proto in range(6):
        add("pickle", f"generated_p{proto}.pkl", pickle.dumps(value, protocol=proto))
    add("pickle", "nested.pkl", b"\x80\x02" + b"]" * 300 + b"a" * 299 + b".")
    dag = b"\x80\x02]q\x00" + b"".join(bytes([0x68, i, 0x68, i, 0x86, 0x71, i + 1]) for i in range(20)) + b"."
    add("pickle", "shared.pkl", dag)

    copy("safetensors", small("*.safetensors"))
    copy("npz", small("*.npz"))
    copy("npy", small("*.npy"))
    for dt in ["<f4", ">f8", "<i8", "|u1", "|b1", "<f2"]:
        for order in ["C", "F"]:
            buf = io.BytesIO()
            np.save(buf, np.asfortranarray(np.arange(6).reshape(2, 3).astype(dt)) if order == "F" else np.arange(6).reshape(2, 3).astype(dt))
            add("npy", f"generated_{dt.strip('<>|')}_{order}.npy", buf.getvalue())

    h5s = small("*.h5")
    copy("h5", h5s)
    add("h5message", "error.bin", message({"error": {"kind": "corrupt", "message": "x"}}, []))
    add("h5message", "dataset.bin", message({"count": 1, "height": 2, "width": 2, "channels": 1, "classNames": ["0"]},
                                            [bytes(4), struct.pack("<i", 0)]))
    add("h5message", "checkpoint.bin", message({"components": [{"name": "tensors", "keys": ["w"], "tensors": [0]}],
                                               "tensors": [{"dtype": "float32", "shape": [2]}], "aliases": {},
                                               "provenance": {}, "metricHistory": {}}, [bytes(8)]))
    # Tensor bytes at offsets of the harness's 4 KiB extent file (the reader process's contiguous datasets).
    add("h5message", "extents.bin", message({"components": [{"name": "tensors", "keys": ["w", "b"], "tensors": [0, 1]}],
                                             "tensors": [{"dtype": "float32", "shape": [2, 3], "offset": 1024},
                                                         {"dtype": "int64", "shape": [1]}], "aliases": {},
                                             "provenance": {"stage": "imported"}, "metricHistory": {}},
                                            [bytes(8)]))

    copy("idx", [p for p in small("*ubyte*")])
    copy("cifar", [])
    for p in small("*.bin"):
        data = p.read_bytes()
        record = 3074 if "cifar100" in str(p) else 3073
        add("cifar", p.parent.name + "_" + p.name, data[: 2 * record])
    copy("png", small("*.png")[:40])
    copy("jpeg", small("*.jpg"))

    try:
        import h5py
        for p in h5s:
            try:
                with h5py.File(p, "r") as f:
                    if "provenance" in f:
                        v = f["provenance"][()]
                        add("provenance", p.stem + ".json", v if isinstance(v, bytes) else v.encode())
            except OSError:
                pass
    except ImportError:
        pass
    add("provenance", "minimal.json", json.dumps({"stage": "imported"}).encode())

    for i, uri in enumerate(["idx:/data/mnist#test", "cifar:data/cifar10#part=train&split=splits/val.txt",
                             "folder:~/images", "h5:../x.h5#part=test", "idx:a/../b/./c#split=s.txt&part=train"]):
        add("uri", f"uri{i}.txt", uri.encode())
    print(json.dumps(seeds, sort_keys=True))


def message(header, blobs):
    h = json.dumps(header).encode()
    out = b"BISSLSB1" + struct.pack("<Q", len(h)) + h + struct.pack("<Q", len(blobs))
    for b in blobs:
        out += struct.pack("<Q", len(b)) + b
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]))
