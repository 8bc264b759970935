"""Resource limits of every reader (README "Hostile input: limits and the HDF5 reader process",
docs/fuzzing.md "Resource limits"), measured: runs the release `bissl` on large valid inputs and on
adversarial ones, and checks each run against the stated limits of its reader.

Each reader states two bounds (`LIMITS` below), in terms of X, the bytes the reader takes in: the
input file's size, or for compressed data (deflated zip records, gzip IDX files) the size it
inflates to, which DEFLATE caps at 1032 x the compressed bytes (Sources/CZlib/shim.h):

    CPU time (user + system, bissl and its HDF5 reader process)  <=  T0 + T1 x X in MB
    peak resident memory (bissl or its reader process)            <=  M0 + K x X

A run passes when both hold, whether the reader accepts the input or refuses it with one `error:`
line (checked too: exit status 1 and a one-line stderr, for the inputs marked as refused).

Inputs (all written to a scratch folder, removed at the end):
  - valid, large: a ResNet-50 state dict (~100 MB) as zip and legacy `.pth`, safetensors, `.npz`
    stored and deflated, our `.h5` (read in the HDF5 reader process, and in process with
    BISSL_HDF5_SANDBOX=0); IDX (60000 x 28 x 28, raw and gzip), CIFAR-10 (10000 records), an `h5:`
    dataset, folders of PNG and JPEG images, and single images of the largest size allowed
    (8192 x 8192, the PNG deflated as far as it goes);
  - adversarial: the worst input per byte each reader's code admits, by construction (pickles of
    deep nesting, exponentially shared memo references, one value per byte, many views of one
    storage; zip records sharing bytes; a deflated record at DEFLATE's largest ratio; tens of
    thousands of tensors; a progressive JPEG of the largest size with 500 scans; gzip bombs; huge
    labels and dataspaces), the committed hostile fixtures (tools/fixtures/make_hostile_fixtures.py),
    and with --corpus the inputs of the fuzz corpora (tools/fuzz/run.sh), each read once through
    the command line and ranked; the slowest and the largest per target are checked.

Run: python3 tools/bench/reader_limits.py PATH/TO/bissl [--only READER,...] [--corpus .build-fuzz/corpus]
     [--corpus-top N] (needs torch, numpy, h5py, Pillow: tools/interop.sh --install-only)
Prints one line per input: reader, input, X, CPU s and bound, peak RSS and bound, verdict; then
the CPU model and the load average before and after. Exits 1 when any input is over its bound.
"""
import argparse
import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
from bench import cpu_model  # noqa: E402
from make_hostile_fixtures import idx, many_scans  # noqa: E402

MB = 1 << 20
DEFLATE_MAX = 1032  # bissl_deflate_max_expansion

# reader: (T0 CPU s, T1 CPU s per MB of X, M0 MB, K = peak RSS bytes per byte of X, extra terms).
# Extra terms: "image" s per image decoded (PNG and JPEG: an image's cost is bounded by its pixels,
# at most 2^26, not by its bytes), "pickle" (s per MB, RSS bytes per byte) of the pickle a `.pth`
# holds. The constants hold the process's start (about 44 MB and 0.03 s) and each reader's fixed
# allowances (256 MiB of expanded pickle views, the HDF5 reader process's 1 GiB and 20 s, an image of
# 2^26 pixels); README's table states them, with what each reader's code checks to keep them.
LIMITS = {
    "pth (zip)":        (2.0, 0.5, 400, 16, {"pickle": (3.0, 200)}),
    "pth (legacy)":     (2.0, 0.5, 400, 16, {"pickle": (3.0, 200)}),
    "pickle":           (2.0, 3.0, 400, 200, {}),
    "safetensors":      (2.0, 0.5, 200, 16, {}),
    "npz / npy":        (2.0, 0.5, 200, 16, {}),
    "h5 (reader process)": (22.0, 0.2, 1200, 6, {}),
    "h5 (in process)":  (2.0, 0.5, 200, 3, {}),
    "provenance":       (2.0, 0.5, 200, 32, {}),
    "idx":              (2.0, 0.1, 400, 3, {}),
    "cifar":            (2.0, 0.1, 200, 3, {}),
    "h5: dataset":      (22.0, 0.2, 1200, 6, {}),
    "png":              (1.0, 6.0, 600, 3, {"image": 2.0}),
    "jpeg":             (1.0, 10.0, 1000, 3, {"image": 2.0}),
    "uri":              (1.0, 1.0, 100, 10, {}),
}


def run(argv, env=None, timeout=300):
    """(exit status, stderr text, CPU s of the process and its waited children, peak RSS bytes, wall s)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = start + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    # wait4's usage is the process's own plus that of the children it waited for; ru_maxrss (KB) is
    # the larger of the two. A child bissl did not collect before it exited (its HDF5 reader process,
    # left to Foundation) comes to this process, the subreaper: collected here and counted too.
    cpu, rss = ru.ru_utime + ru.ru_stime, ru.ru_maxrss
    while True:
        try:
            pid, _, orphan = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not pid:
            break
        cpu, rss = cpu + orphan.ru_utime + orphan.ru_stime, max(rss, orphan.ru_maxrss)
    return p.returncode, text, cpu, rss * 1024, time.perf_counter() - start


def become_subreaper():
    """Makes this process the parent of its descendants' orphans (Linux prctl PR_SET_CHILD_SUBREAPER)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        print("warning: cannot become a child subreaper; an HDF5 reader process bissl did not collect is not counted",
              file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Inputs. Each builder returns a list of cases: (reader, name, argv tail, X bytes, expect) where
# expect is "ok" (the reader accepts it), "error" (one error line) or "any".


def zip_pth(path, pickle_bytes, records, version=b"3"):
    """A torch zip checkpoint: archive/data.pkl, archive/version, archive/data/KEY records (stored)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", version + b"\n")
        for key, data in records.items():
            z.writestr(f"archive/data/{key}", data)


def zip_pickle_bytes(path):
    """The size of a torch zip checkpoint's data.pkl."""
    with zipfile.ZipFile(path) as z:
        return next(i.file_size for i in z.infolist() if i.filename.endswith("/data.pkl"))


def valid_checkpoints(work, bissl):
    import torch
    import make_inputs

    make_inputs.resnet50(work)
    pth = os.path.join(work, "r50.pth")
    legacy = os.path.join(work, "r50-legacy.pth")
    torch.save(torch.load(pth, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    out = {"pth": pth, "legacy": legacy, "st": os.path.join(work, "r50.safetensors")}
    for name, extra in (("npz", []), ("npzc", ["--compress"]), ("h5", [])):
        target = os.path.join(work, f"r50-{name}.{'h5' if name == 'h5' else 'npz'}")
        subprocess.run([bissl, "convert", pth, target] + extra, check=True, stdout=subprocess.DEVNULL)
        out[name] = target
    size = os.path.getsize
    sd = torch.load(pth, weights_only=True)
    legacy_pickle = size(legacy) - sum(t.nbytes for t in sd.values())
    # The deflated .npz inflates to the stored one's records.
    return [
        ("pth (zip)", "ResNet-50 state dict, torch.save", ["inspect", out["pth"]], size(out["pth"]), "ok",
         {"pickle": zip_pickle_bytes(out["pth"])}),
        ("pth (legacy)", "ResNet-50, torch.save legacy stream", ["inspect", out["legacy"]], size(out["legacy"]), "ok",
         {"pickle": legacy_pickle}),
        ("safetensors", "ResNet-50", ["inspect", out["st"]], size(out["st"]), "ok"),
        ("npz / npy", "ResNet-50, stored", ["inspect", out["npz"]], size(out["npz"]), "ok"),
        ("npz / npy", "ResNet-50, deflated", ["inspect", out["npzc"]], size(out["npz"]), "ok"),
        ("h5 (reader process)", "ResNet-50, bissl convert", ["inspect", out["h5"]], size(out["h5"]), "ok"),
        ("h5 (in process)", "ResNet-50, bissl convert", ["inspect", out["h5"]], size(out["h5"]), "ok"),
    ]


def pickle_cases(work):
    cases = []
    # Nesting 30,000 deep (refused at 200 levels, released without recursion).
    deep = b"\x80\x02" + b"]" * 30000 + b"a" * 29999 + b"."
    # Memo references shared over and over: 2^60 values from a few hundred bytes.
    shared = bytearray(b"\x80\x02]q\x00")
    for i in range(60):
        shared += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1])
    shared += b"."
    # One value per byte: MARK, a million empty lists, LIST (every one converted: within the value limit).
    many = b"\x80\x02(" + b"]" * 1_000_000 + b"l."
    for name, data, expect in (("30,000 levels deep", deep, "error"), ("shared memo references, 2^60 values", bytes(shared), "error"),
                               ("1,000,000 empty lists", many, "any")):
        path = os.path.join(work, f"pickle-{len(cases)}.pth")
        zip_pth(path, data, {})
        cases.append(("pickle", name, ["inspect", path], len(data), expect))
    return cases


def view_cases(work):
    """Many views of one storage, each copying most of it: torch.save keeps views as views."""
    import torch

    base = torch.zeros(1 << 20)  # 4 MiB
    views = {f"v{i}": base[i:(1 << 20) - 2000 + i] for i in range(2000)}
    cases = []
    for name, legacy in (("pth (zip)", False), ("pth (legacy)", True)):
        path = os.path.join(work, f"views-{legacy}.pth")
        torch.save(views, path, _use_new_zipfile_serialization=not legacy)
        pickled = zip_pickle_bytes(path) if not legacy else os.path.getsize(path) - base.nbytes
        cases.append((name, "2,000 overlapping views of one 4 MiB storage", ["inspect", path], os.path.getsize(path), "error",
                      {"pickle": pickled}))
    many = {f"layer{i}.weight": torch.zeros(4) for i in range(50000)}
    path = os.path.join(work, "many.pth")
    torch.save(many, path)
    cases.append(("pth (zip)", "50,000 tensors", ["inspect", path], os.path.getsize(path), "any", {"pickle": zip_pickle_bytes(path)}))
    return cases


def overlapping_zip(path, member_bytes, copies):
    """An .npz whose `copies` directory entries all point at one deflated .npy record."""
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118)
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % (member_bytes - 128)
    npy += header.encode().ljust(117) + b"\n"
    npy += bytes(member_bytes - len(npy))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(npy) + comp.flush()
    crc = zlib.crc32(npy)
    name = b"a.npy"
    out = bytearray(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), len(npy), len(name), 0) + name + data)
    cd = bytearray()
    for i in range(copies):
        n = f"a{i}.npy".encode()
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), len(npy), len(n), 0, 0, 0, 0, 0, 0) + n
    start = len(out)
    out += cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(copies, 0xFFFF), min(copies, 0xFFFF), len(cd), start, 0)
    with open(path, "wb") as f:
        f.write(out)


def zip_cases(work):
    import numpy as np

    cases = []
    path = os.path.join(work, "overlap.npz")
    overlapping_zip(path, 1 << 20, 10000)
    cases.append(("npz / npy", "10,000 directory entries on one 1 MiB deflated record", ["inspect", path], os.path.getsize(path), "error"))
    # One deflated record at DEFLATE's largest ratio: 256 MiB of zeros in ~250 KB (a valid file).
    path = os.path.join(work, "ratio.npz")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        buf = io.BytesIO()
        np.save(buf, np.zeros(256 * MB, np.uint8))
        z.writestr("x.npy", buf.getvalue())
    cases.append(("npz / npy", "256 MiB of zeros deflated (~1000x)", ["inspect", path], 256 * MB, "any"))
    path = os.path.join(work, "many.npz")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(20000):
            buf = io.BytesIO()
            np.save(buf, np.zeros(4, np.float32))
            z.writestr(f"layer{i}.weight.npy", buf.getvalue())
    cases.append(("npz / npy", "20,000 members", ["inspect", path], os.path.getsize(path), "any"))
    # A .npy member whose header is 64 KiB of shape digits.
    path = os.path.join(work, "header.npz")
    dims = ", ".join(["1"] * 20000)
    header = ("{'descr': '<f4', 'fortran_order': False, 'shape': (%s, 1), }" % dims).encode()
    npy = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header) + 1) + header + b"\n" + bytes(4)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy)
    cases.append(("npz / npy", ".npy header of 20,000 dimensions", ["inspect", path], os.path.getsize(path), "any"))
    return cases


def safetensors_cases(work):
    cases = []
    n = 200000
    header = {f"layer{i}.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(n)}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path = os.path.join(work, "many.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(4 * n))
    cases.append(("safetensors", "200,000 tensors (a 13 MB header)", ["inspect", path], os.path.getsize(path), "any"))
    # Nesting in __metadata__ (refused at 128 levels).
    text = b'{"__metadata__":' + b"[" * 100000 + b"]" * 100000 + b"}"
    path = os.path.join(work, "deep.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
    cases.append(("safetensors", "JSON nested 100,000 deep", ["inspect", path], os.path.getsize(path), "error"))
    return cases


def h5_cases(work, bissl):
    import h5py

    cases = []
    hostile = os.path.join(ROOT, "Tests", "Fixtures", "hostile")
    for name in ("hdf5_segv.h5", "space_huge.h5", "space_overflow.h5"):
        path = os.path.join(hostile, name)
        cases.append(("h5 (reader process)", f"fixture {name}", ["inspect", path], os.path.getsize(path), "error"))
    # Provenance: a checkpoint whose /provenance document is 15-16 MB of JSON (a flat array of
    # numbers, of empty objects, and an array nested 100,000 deep).
    tiny = os.path.join(work, "tiny.safetensors")
    import make_inputs
    make_inputs.tiny(work)
    for label, doc in (("16 MB of JSON numbers", "[" + ",".join(["1"] * 8_000_000) + "]"),
                       ("15 MB of {} objects", '{"a":[' + ",".join(["{}"] * 5_000_000) + "]}"),
                       ("JSON nested 100,000 deep", "[" * 100000 + "]" * 100000)):
        path = os.path.join(work, f"prov-{len(cases)}.h5")
        subprocess.run([bissl, "convert", tiny, path], check=True, stdout=subprocess.DEVNULL)
        with h5py.File(path, "r+") as f:
            del f["provenance"]
            f.create_dataset("provenance", data=doc, dtype=h5py.string_dtype())
        cases.append(("provenance", label, ["inspect", path], os.path.getsize(path), "error"))
    return cases


def dataset_cases(work):
    import h5py
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    cases = []
    # IDX, raw and gzip: 60000 x 28 x 28 (smooth enough to compress like MNIST does).
    images = (np.add.outer(np.arange(28), np.arange(28))[None] * rng.integers(0, 5, (60000, 1, 1))).astype(np.uint8)
    labels = rng.integers(0, 10, 60000).astype(np.uint8)
    for gz in (False, True):
        d = os.path.join(work, f"idx-{gz}")
        os.makedirs(d)
        img = idx([60000, 28, 28], images.tobytes())
        lab = idx([60000], labels.tobytes())
        with open(os.path.join(d, "train-images-idx3-ubyte" + (".gz" if gz else "")), "wb") as f:
            f.write(gzip.compress(img, 6, mtime=0) if gz else img)
        with open(os.path.join(d, "train-labels-idx1-ubyte" + (".gz" if gz else "")), "wb") as f:
            f.write(gzip.compress(lab, 6, mtime=0) if gz else lab)
        cases.append(("idx", f"60000 x 28 x 28{', gzip' if gz else ''}", ["data", "info", f"idx:{d}"], len(img) + len(lab), "ok"))
    # One image of the most pixels allowed (8192 x 8192) at gzip's largest ratio: 64 MiB from ~64 KB.
    d = os.path.join(work, "idx-ratio")
    os.makedirs(d)
    img = idx([1, 8192, 8192], bytes(8192 * 8192))
    with open(os.path.join(d, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(img, 9, mtime=0))
    with open(os.path.join(d, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(idx([1], b"\x00"))
    cases.append(("idx", "one 8192 x 8192 image, gzip at ~1000x", ["data", "info", f"idx:{d}"], len(img), "ok"))
    hostile = os.path.join(ROOT, "Tests", "Fixtures", "hostile")
    for name, compressed in (("idx_bomb", True), ("idx_claims", True), ("idx_wide", False)):
        d = os.path.join(hostile, name)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        cases.append(("idx", f"fixture {name}", ["data", "info", f"idx:{d}"], size * (DEFLATE_MAX if compressed else 1), "error"))
    # CIFAR-10: 10000 records.
    d = os.path.join(work, "cifar")
    os.makedirs(d)
    records = np.concatenate([rng.integers(0, 10, (10000, 1)), rng.integers(0, 256, (10000, 3072))], axis=1).astype(np.uint8)
    with open(os.path.join(d, "test_batch.bin"), "wb") as f:
        f.write(records.tobytes())
    cases.append(("cifar", "10000 records", ["data", "info", f"cifar:{d}#part=test"], records.size, "ok"))
    # h5: dataset, 10000 x 32 x 32 x 3, and the hostile fixtures.
    path = os.path.join(work, "ds.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("test/images", data=rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8))
        f.create_dataset("test/labels", data=rng.integers(0, 10, 10000))
    cases.append(("h5: dataset", "10000 x 32 x 32 x 3", ["data", "info", f"h5:{path}#part=test"], os.path.getsize(path), "ok"))
    for name, part in (("labels_huge.h5", ""), ("labels_400m.h5", ""), ("images_huge.h5", ""), ("hdf5_segv.h5", "#part=test")):
        path = os.path.join(hostile, name)
        cases.append(("h5: dataset", f"fixture {name}{part}", ["data", "info", f"h5:{path}{part}"], os.path.getsize(path), "error"))
    # Folders: 300 photos-like 256 x 256 images each as PNG and JPEG.
    for fmt, ext in (("png", "png"), ("jpeg", "jpg")):
        d = os.path.join(work, f"folder-{fmt}")
        total = 0
        for c in range(3):
            os.makedirs(os.path.join(d, f"c{c}"))
            for i in range(100):
                a = (np.add.outer(np.arange(256), np.arange(256)) // 2 + i)[..., None] + np.array([0, 40, 80])
                p = os.path.join(d, f"c{c}", f"{i}.{ext}")
                Image.fromarray(a.astype(np.uint8)).save(p)
                total += os.path.getsize(p)
        cases.append((fmt, "folder of 300 images, 256 x 256", ["data", "info", f"folder:{d}"], total, "ok", {"images": 300}))
    # The largest image allowed, 8192 x 8192: PNG deflated as far as it goes, baseline and
    # progressive JPEG, and a progressive JPEG of that size with 500 scans (each scan walks the
    # whole coefficient buffer).
    big = Image.new("RGB", (8192, 8192), (200, 30, 30))
    for fmt, ext, opts, label in (("png", "png", {"compress_level": 9}, "8192 x 8192, deflated ~1000x"),
                                  ("jpeg", "jpg", {"quality": 90}, "8192 x 8192 baseline"),
                                  ("jpeg", "jpg", {"quality": 90, "progressive": True}, "8192 x 8192 progressive")):
        d = os.path.join(work, f"big-{fmt}-{len(cases)}", "c")
        os.makedirs(d)
        p = os.path.join(d, f"x.{ext}")
        big.save(p, **opts)
        cases.append((fmt, label, ["data", "info", f"folder:{os.path.dirname(d)}"], os.path.getsize(p), "ok"))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90, progressive=True)
    data = many_scans(buf.getvalue(), 500)
    d = os.path.join(work, "scans", "c")
    os.makedirs(d)
    with open(os.path.join(d, "x.jpg"), "wb") as f:
        f.write(data)
    cases.append(("jpeg", "8192 x 8192 progressive, 500 scans", ["data", "info", f"folder:{os.path.dirname(d)}", "--strict"], len(data), "any"))
    for name in ("progressive_34000.jpg", "progressive_scans.jpg"):
        path = os.path.join(hostile, name)
        d = os.path.join(work, name, "c")
        os.makedirs(d)
        shutil.copy(path, d)
        cases.append(("jpeg", f"fixture {name}", ["data", "info", f"folder:{os.path.dirname(d)}", "--strict"], os.path.getsize(path), "error"))
    # A URI of 100,000 characters.
    uri = "idx:/nonexistent#" + "&".join(["part=train"] * 9000)
    cases.append(("uri", "100,000 characters", ["data", "info", uri[:100000]], 100000, "error"))
    return cases


# ---------------------------------------------------------------------------------------------
# Fuzz corpora: each input through the command line of its target.

CORPUS_TARGETS = {
    # target: (reader, how to lay the input out, compressible)
    "pth": ("pth (zip)", "pth", True),
    "zip": ("pth (zip)", "pth", True),
    "pickle": ("pickle", "pickle", False),
    "safetensors": ("safetensors", "safetensors", False),
    "npz": ("npz / npy", "npz", True),
    "npy": ("npz / npy", "npy", False),
    "h5": ("h5 (reader process)", "h5", False),
    "idx": ("idx", "idx", True),
    "cifar": ("cifar", "cifar", False),
    "png": ("png", "image", True),
    "jpeg": ("jpeg", "image", False),
    "uri": ("uri", "uri", False),
}


def corpus_case(target, data, work):
    """(argv tail, X) reading `data` the way the fuzz target `target` does, through the command line."""
    reader, layout, compressible = CORPUS_TARGETS[target]
    x = len(data) * (DEFLATE_MAX if compressible else 1)
    if layout in ("pth", "safetensors", "h5"):
        path = os.path.join(work, f"in.{layout}")
        open(path, "wb").write(data)
        return ["inspect", path], x
    if layout == "npz":
        path = os.path.join(work, "in.npz")
        open(path, "wb").write(data)
        return ["inspect", path], x
    if layout == "pickle":
        path = os.path.join(work, "in.pth")
        zip_pth(path, data, {})
        return ["inspect", path], x
    if layout == "npy":
        path = os.path.join(work, "in.npz")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.npy", data)
        return ["inspect", path], x
    d = os.path.join(work, "ds")
    shutil.rmtree(d, ignore_errors=True)
    if layout == "idx":
        os.makedirs(d)
        open(os.path.join(d, "train-images-idx3-ubyte"), "wb").write(data)
        open(os.path.join(d, "train-labels-idx1-ubyte"), "wb").write(idx([1], b"\x00"))
        return ["data", "info", f"idx:{d}"], x
    if layout == "cifar":
        os.makedirs(d)
        open(os.path.join(d, "test_batch.bin"), "wb").write(data)
        return ["data", "info", f"cifar:{d}#part=test"], x
    if layout == "image":
        os.makedirs(os.path.join(d, "c"))
        open(os.path.join(d, "c", "x.png" if target == "png" else "x.jpg"), "wb").write(data)
        return ["data", "info", f"folder:{d}"], x
    text = data.decode("utf-8", "replace").replace("\x00", "")
    return ["data", "info", text or "-"], x


def corpus_rows(bissl, corpus, targets, top, work):
    rows = []
    for target in targets:
        folder = os.path.join(corpus, target)
        if not os.path.isdir(folder):
            continue
        # libFuzzer's slow units of the target (run.sh keeps them beside the corpora, in findings/)
        # are the slowest inputs it met: read here as well.
        findings = os.path.join(os.path.dirname(os.path.abspath(corpus)), "findings", target)
        files = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
        if os.path.isdir(findings):
            files += [os.path.join(findings, n) for n in sorted(os.listdir(findings)) if n.startswith("slow-unit-")]
        results = []
        for file in files:
            name = ("findings/" if "/findings/" in file else "") + os.path.basename(file)
            data = open(file, "rb").read()
            argv, x = corpus_case(target, data, work)
            status, err, cpu, rss, wall = run([bissl] + argv)
            results.append((cpu, rss, name, x, status, err))
        reader = CORPUS_TARGETS[target][0]
        by_cpu = sorted(results, key=lambda r: -r[0])[:top]
        by_rss = sorted(results, key=lambda r: -r[1])[:top]
        print(f"# corpus {target}: {len(results)} inputs, CPU s total {sum(r[0] for r in results):.1f}, "
              f"slowest {by_cpu[0][0]:.2f} s, largest {by_rss[0][1] / MB:.0f} MB", flush=True)
        for r in {id(r): r for r in by_cpu + by_rss}.values():
            rows.append((reader, f"{target} {r[2][:40]}", r[3], r[0], r[1], r[4], r[5], None, {}))
    return rows


# ---------------------------------------------------------------------------------------------


def verdict(reader, x, cpu, rss, extra):
    """(CPU bound s, RSS bound bytes, both held) for a run of `reader` on X = `x` bytes; `extra` gives
    the images decoded and the pickle bytes of a `.pth` (see LIMITS)."""
    t0, t1, m0, k, terms = LIMITS[reader]
    cpu_bound = t0 + t1 * x / MB
    rss_bound = m0 * MB + k * x
    if "image" in terms:
        cpu_bound += terms["image"] * extra.get("images", 1)
    if "pickle" in terms:
        tp, kp = terms["pickle"]
        p = extra.get("pickle", x)
        cpu_bound += tp * p / MB
        rss_bound += kp * p
    return cpu_bound, rss_bound, cpu <= cpu_bound and rss <= rss_bound


GROUPS = {
    "checkpoints": lambda work, bissl: valid_checkpoints(work, bissl),
    "pickle": lambda work, bissl: pickle_cases(work),
    "views": lambda work, bissl: view_cases(work),
    "zip": lambda work, bissl: zip_cases(work),
    "safetensors": lambda work, bissl: safetensors_cases(work),
    "h5": lambda work, bissl: h5_cases(work, bissl),
    "datasets": lambda work, bissl: dataset_cases(work),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bissl")
    ap.add_argument("--only", help="comma-separated groups: " + ",".join(GROUPS))
    ap.add_argument("--corpus", help="the fuzz corpora folder (.build-fuzz/corpus): rank its inputs too")
    ap.add_argument("--corpus-targets", default=",".join(CORPUS_TARGETS))
    ap.add_argument("--corpus-top", type=int, default=2)
    ap.add_argument("--skip-generated", action="store_true")
    ap.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    bissl = os.path.abspath(args.bissl)
    chosen = [] if args.skip_generated else (args.only.split(",") if args.only else list(GROUPS))
    if args.generate:
        # The inputs are made in a process of their own: a process's peak RSS starts from that of the
        # process it was forked from (Linux keeps the high-water mark across exec), so the process that
        # starts bissl must stay small.
        cases = [case for g in chosen for case in GROUPS[g](args.generate, bissl)]
        with open(os.path.join(args.generate, "cases.json"), "w") as f:
            json.dump(cases, f)
        return 0
    become_subreaper()
    work = tempfile.mkdtemp(prefix="bissl-reader-limits-")
    failed = 0
    try:
        cases = []
        if chosen:
            subprocess.run([sys.executable, os.path.abspath(__file__), bissl, "--generate", work, "--only", ",".join(chosen)], check=True)
            with open(os.path.join(work, "cases.json")) as f:
                cases = json.load(f)
        _, _, base_cpu, base_rss, _ = run([bissl, "--version"])
        load0 = os.getloadavg()
        print(f"CPU {cpu_model()}; load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
              f"bissl --version: {base_cpu:.3f} s CPU, {base_rss / MB:.0f} MB peak RSS", flush=True)
        print(f"{'reader':<20} {'input':<52} {'X MB':>8} {'CPU s':>7} {'bound':>7} {'RSS MB':>7} {'bound':>7}  result")
        rows = []
        for case in cases:
            reader, name, argv, x, expect = case[:5]
            env = dict(os.environ)
            if reader == "h5 (in process)":
                env["BISSL_HDF5_SANDBOX"] = "0"
            status, err, cpu, rss, wall = run([bissl] + argv, env=env)
            rows.append((reader, name, x, cpu, rss, status, err, expect, case[5] if len(case) > 5 else {}))
            print_row(rows[-1])
        if args.corpus:
            scratch = os.path.join(work, "corpus")
            os.makedirs(scratch)
            for row in corpus_rows(bissl, args.corpus, args.corpus_targets.split(","), args.corpus_top, scratch):
                rows.append(row)
                print_row(row)
        failed = sum(1 for r in rows if not ok(r))
        load1 = os.getloadavg()
        print(f"{len(rows)} inputs, {failed} over a bound or not ending as expected; "
              f"load average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def ok(row):
    reader, name, x, cpu, rss, status, err, expect, extra = row
    within = verdict(reader, x, cpu, rss, extra)[2]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    one_line = status != 0 and len(lines) == 1 and len(err.strip().splitlines()) >= 1 and status == 1
    if expect == "ok":
        return within and status == 0
    if expect == "error":
        return within and one_line
    # Accepted, or refused with one error line; never a crash (exit status past 1, or a signal).
    return within and (status == 0 or one_line)


def print_row(row):
    reader, name, x, cpu, rss, status, err, expect, extra = row
    cpu_bound, rss_bound, within = verdict(reader, x, cpu, rss, extra)
    end = "accepted" if status == 0 else f"exit {status}"
    if status != 0:
        first = next((line for line in err.splitlines() if line.startswith("error:")), err.strip()[:60])
        text = re.sub(r"(\S*/bissl-reader-limits-[^/\s]*/|" + re.escape(ROOT) + "/)", "", first[6:].strip())
        end += ": " + text[:90]
    print(f"{reader:<20} {name[:52]:<52} {x / MB:8.2f} {cpu:7.2f} {cpu_bound:7.1f} {rss / MB:7.0f} {rss_bound / MB:7.0f}  "
          f"{'ok' if ok(row) else 'OVER'} ({end})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
