"""h5py reads the HDF5 checkpoints bissl writes (`bissl convert X.safetensors Y.h5 --to h5`).

Inputs are the safetensors fixtures written by the real library (tools/fixtures/
make_safetensors_npz_fixtures.py). Each is converted by bissl; the result is opened with h5py following
schemas/checkpoint-v1.md and checked against what safetensors reads from the original: every tensor
bit-equal with the same dtype and shape (float16 as numpy float16, bfloat16 as its uint16 bits with
`dtype = "bfloat16"`), the provenance JSON valid against schemas/provenance.schema.json, and the
content id recomputed by tools/fixtures/h5_content_id.py (an implementation of the spec only) equal to the stored
`content_id`.
"""
import json
import sys
from pathlib import Path

import h5py
import jsonschema
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "fixtures"))
from h5_content_id import _escape as escape, _text as text, content_id, read_h5  # noqa: E402

ST = ROOT / "Tests" / "Fixtures" / "safetensors"
SCHEMA = json.loads((ROOT / "schemas" / "provenance.schema.json").read_text())

SPEC_DTYPE = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
              torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32", torch.int16: "int16",
              torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}
NUMPY_OF = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": np.uint16,
            "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
            "bool": np.uint8}


def read_flat(path):
    """{flat state-dict name: (spec dtype, numpy array)} with h5py; backbone and classifier keys
    unprefixed, other components' keys prefixed `<component>.` (the flat export rule)."""
    out = {}
    with h5py.File(path, "r") as f:
        assert text(f.attrs["format"]) == "bissl-checkpoint"
        assert text(f.attrs["format_version"]) == "1.0"
        for component in map(text, f["components"][()]):
            group = f["tensors"][escape(component)]
            keys = [text(k) for k in f["keys"][escape(component)][()]]
            assert sorted(map(escape, keys)) == sorted(group.keys()), "every dataset listed once in /keys"
            for key in keys:
                ds = group[escape(key)]
                marker = ds.attrs.get("dtype")
                dtype = text(marker) if marker is not None else {
                    np.dtype(v): k for k, v in NUMPY_OF.items() if k not in ("bfloat16", "bool")}[ds.dtype]
                assert ds.dtype == np.dtype(NUMPY_OF[dtype]), (key, ds.dtype)
                name = key if component in ("backbone", "classifier", "tensors") else f"{component}.{key}"
                out[name] = (dtype, ds[()])
    return out


def torch_bits(t):
    t = t.contiguous()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def check_file(h5_path, expected):
    """All interop checks of one file against the tensors safetensors read from the source."""
    ours = read_flat(h5_path)
    assert set(ours) == set(expected)
    for name, t in expected.items():
        dtype, arr = ours[name]
        assert dtype == SPEC_DTYPE[t.dtype], name
        assert tuple(arr.shape) == tuple(t.shape), name
        assert np.ascontiguousarray(arr).tobytes() == torch_bits(t), name
        if dtype == "float16":
            assert arr.dtype == np.float16 and np.array_equal(arr, t.numpy(), equal_nan=True), name
    with h5py.File(h5_path, "r") as f:
        provenance = json.loads(f["provenance"][()])
        stored_id = text(f.attrs["content_id"])
    jsonschema.validate(provenance, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert content_id(*read_h5(h5_path)) == stored_id
    check_tensor_index(h5_path)


def read_tensor_index(path):
    """The tensor index in the file's HDF5 user block, decoded from schemas/checkpoint-v1.md ("Tensor
    index") alone: (content id, provenance text, [(component, key, dtype, shape, offset, nbytes)],
    [(metric, offset, count)], bytes used). The architecture record is skipped by its encoding."""
    data = Path(path).read_bytes()
    pos = 0

    def u64():
        nonlocal pos
        pos += 8
        return int.from_bytes(data[pos - 8:pos], "little")

    def string():
        nonlocal pos
        n = u64()
        pos += n
        return data[pos - n:pos].decode("utf-8")

    assert string() == "bissl-tensor-index/v1"
    end = u64() + pos
    cid = string()
    def skip_i64s():   # u64(n) then n i64 values
        nonlocal pos
        n = u64()
        pos += 8 * n

    if data[pos] == 1:   # arch: family, depth, block, layers, width, stem, heads
        pos += 1
        string(); u64(); string()
        skip_i64s()
        u64(); string()
        for _ in range(u64()):
            string(); string()
            skip_i64s()
    else:
        pos += 1
    provenance = string()
    tensors = []
    for _ in range(u64()):
        component = string()
        for _ in range(u64()):
            key, dtype = string(), string()
            shape = tuple(u64() for _ in range(u64()))
            tensors.append((component, key, dtype, shape, u64(), u64()))
    histories = [(string(), u64(), u64()) for _ in range(u64())]
    assert pos == end, "the payload ends where its length says"
    return cid, provenance, tensors, histories, end


def check_tensor_index(path):
    """The index repeats what h5py sees: every name's dtype, shape and file offset (`get_offset`, the
    bytes there equal to the dataset's), the provenance document and the content id; HDF5's superblock
    lies after it (h5py's `userblock_size`)."""
    cid, provenance, tensors, histories, used = read_tensor_index(path)
    raw = Path(path).read_bytes()
    with h5py.File(path, "r") as f:
        assert f.userblock_size >= max(512, used)
        assert cid == text(f.attrs["content_id"])
        assert provenance == text(f["provenance"][()])
        expected = [(text(c), text(k)) for c in f["components"][()] for k in f["keys"][escape(text(c))][()]]
        assert [(c, k) for c, k, *_ in tensors] == expected
        for component, key, dtype, shape, offset, nbytes in tensors:
            ds = f["tensors"][escape(component)][escape(key)]
            marker = ds.attrs.get("dtype")
            assert dtype == (text(marker) if marker is not None else ds.dtype.name), key
            assert shape == ds.shape, key
            data = np.ascontiguousarray(ds[()]).tobytes()
            assert nbytes == len(data), key
            if nbytes:
                assert offset == ds.id.get_offset() and raw[offset:offset + nbytes] == data, key
        names = sorted(f["metric_history"].keys()) if "metric_history" in f else []
        assert [m for m, _, _ in histories] == sorted(names, key=lambda m: m.encode())


@pytest.mark.parametrize("name", ["resnet18_w4.safetensors", "empty.safetensors", "bf16.safetensors",
                                  "f16_subnormal.safetensors", "all_dtypes.safetensors"])
def test_h5py_reads_our_h5(bissl, tmp_path, name):
    out = tmp_path / "out.h5"
    bissl("convert", ST / name, out, "--to", "h5")
    check_file(out, load_file(ST / name))


def test_bf16_bits_and_f16_subnormals_in_h5py(bissl, tmp_path):
    out = tmp_path / "bf16.h5"
    bissl("convert", ST / "bf16.safetensors", out, "--to", "h5")
    bits = {k: arr for k, (dtype, arr) in read_flat(out).items() if dtype == "bfloat16"}
    assert any(int(np.ravel(a)[0]) == 0x3F80 for a in bits.values() if a.size), "bf16 1.0 kept as 0x3F80 (C14)"
    out16 = tmp_path / "f16.h5"
    bissl("convert", ST / "f16_subnormal.safetensors", out16, "--to", "h5")
    halves = [arr for dtype, arr in read_flat(out16).values() if dtype == "float16"]
    assert any((np.abs(a) < np.float16(6.1e-5)).any() and (a != 0).any() for a in halves), "f16 subnormals kept"


def test_same_tensors_same_content_id_whatever_the_source(bissl, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    bissl("convert", ST / "resnet18_w4.safetensors", a, "--to", "h5")
    bissl("convert", a, b, "--to", "h5")
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert text(fa.attrs["content_id"]) == text(fb.attrs["content_id"])
