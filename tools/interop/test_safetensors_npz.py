"""safetensors and NumPy read what bissl writes (`bissl convert X Y --to safetensors|npz`).

Inputs are the fixtures written by the real libraries (tools/fixtures/make_safetensors_npz_fixtures.py);
each is converted by bissl and the result is read back with safetensors.safe_open / load_file and
numpy.load, and compared bit for bit with what those libraries read from the original.
"""
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures"
ST = FIXTURES / "safetensors"
NPZ = FIXTURES / "npz"


def torch_bits(t):
    """Raw bytes of a tensor (bf16 through int16, which numpy has), for bit-exact comparison."""
    t = t.contiguous()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def assert_same_tensors(ours, theirs):
    assert set(ours) == set(theirs)
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype, k
        assert ours[k].shape == theirs[k].shape, k
        assert torch_bits(ours[k]) == torch_bits(theirs[k]), k


@pytest.mark.parametrize("name", ["resnet18_w4.safetensors", "empty.safetensors", "bf16.safetensors",
                                  "f16_subnormal.safetensors", "all_dtypes.safetensors"])
def test_safetensors_reads_our_safetensors(bissl, tmp_path, name):
    out = tmp_path / "out.safetensors"
    bissl("convert", ST / name, out, "--to", "safetensors")
    ours = load_file(out)
    assert_same_tensors(ours, load_file(ST / name))
    with safe_open(out, "pt") as f:
        metadata = f.metadata()
    assert metadata, "bissl writes a provenance summary in __metadata__"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())


def test_bf16_bits_survive_safetensors_c14(bissl, tmp_path):
    out = tmp_path / "bf16.safetensors"
    bissl("convert", ST / "bf16.safetensors", out, "--to", "safetensors")
    t = load_file(out)["bf"]
    assert t.dtype == torch.bfloat16
    assert int(t.view(torch.int16)[0]) == 0x3F80 and float(t[0]) == 1.0


def test_empty_tensors_survive_safetensors_c13(bissl, tmp_path):
    out = tmp_path / "empty.safetensors"
    bissl("convert", ST / "empty.safetensors", out, "--to", "safetensors")
    t = load_file(out)
    assert t["e0"].shape == (0,) and t["e20"].shape == (2, 0)
    assert t["w"].tolist() == [1.5, -2.25, 3.0]


def test_npz_from_safetensors_reads_in_numpy(bissl, tmp_path):
    """Every dtype numpy has comes out as that dtype under its own key; bf16 as the exact float32
    upcast by default (with a note), or with --bf16 bits as '<u2' bit patterns under the same key,
    listed in the member dtypes.json."""
    src = load_file(ST / "all_dtypes.safetensors")
    bf16 = sorted(k for k, t in src.items() if t.dtype == torch.bfloat16)
    assert bf16
    for mode in ["float32", "bits"]:
        out = tmp_path / f"all-{mode}.npz"
        args = ["--bf16", "bits"] if mode == "bits" else []
        proc = bissl("convert", ST / "all_dtypes.safetensors", out, "--to", "npz", *args)
        assert ("written as float32" in proc.stdout) == (mode == "float32"), proc.stdout
        with np.load(out, allow_pickle=False) as z:
            extra = {"dtypes.json"} if mode == "bits" else set()
            assert set(z.files) == set(src) | extra
            for k, t in src.items():
                a = z[k]
                assert a.shape == tuple(t.shape), k
                if t.dtype == torch.bfloat16 and mode == "bits":
                    assert a.dtype == np.dtype("<u2") and a.tobytes() == torch_bits(t), k
                elif t.dtype == torch.bfloat16:
                    assert a.dtype == np.float32 and a.tobytes() == t.float().numpy().tobytes(), k
                else:
                    assert a.dtype == t.numpy().dtype and a.tobytes() == t.numpy().tobytes(), k
            if mode == "bits":
                assert json.loads(z["dtypes.json"]) == {k: "bfloat16" for k in bf16}
        # Read back by bissl: the bit patterns are bfloat16 again, bit for bit.
        back = tmp_path / f"back-{mode}.safetensors"
        bissl("convert", out, back, "--to", "safetensors")
        again = load_file(back)
        for k in bf16:
            want = src[k] if mode == "bits" else src[k].float()
            assert again[k].dtype == want.dtype and torch_bits(again[k]) == torch_bits(want), k


@pytest.mark.parametrize("name", ["resnet18_w4.npz", "resnet18_w4_compressed.npz", "special.npz"])
def test_numpy_reads_our_npz(bissl, tmp_path, name):
    out = tmp_path / "out.npz"
    bissl("convert", NPZ / name, out, "--to", "npz")
    with np.load(NPZ / name) as theirs, np.load(out, allow_pickle=False) as ours:
        assert set(ours.files) == set(theirs.files)
        for k in theirs.files:
            a, b = ours[k], theirs[k]
            assert a.shape == b.shape, k
            assert a.dtype.newbyteorder("<") == b.dtype.newbyteorder("<"), k
            assert np.array_equal(a, b), k
            assert a.flags.c_contiguous, k
    with zipfile.ZipFile(out) as z:
        assert all(i.filename.endswith(".npy") for i in z.infolist())


def test_numpy_reads_our_compressed_npz(bissl, tmp_path):
    """Deflated members, as numpy.savez_compressed writes them (`convert --compress`)."""
    out = tmp_path / "out.npz"
    bissl("convert", NPZ / "resnet18_w4.npz", out, "--to", "npz", "--compress")
    with zipfile.ZipFile(out) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    with np.load(NPZ / "resnet18_w4.npz") as theirs, np.load(out, allow_pickle=False) as ours:
        assert set(ours.files) == set(theirs.files)
        for k in theirs.files:
            assert ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]), k


def test_safetensors_from_npz_roundtrip(bissl, tmp_path):
    """npz -> safetensors -> npz keeps every array."""
    st = tmp_path / "mid.safetensors"
    back = tmp_path / "back.npz"
    bissl("convert", NPZ / "special.npz", st, "--to", "safetensors")
    bissl("convert", st, back, "--to", "npz")
    with np.load(NPZ / "special.npz") as theirs, np.load(back) as ours, safe_open(st, "np") as f:
        for k in theirs.files:
            assert np.array_equal(f.get_tensor(k), theirs[k]), k
            assert np.array_equal(ours[k], theirs[k]), k


@pytest.mark.parametrize("bad", sorted(p.name for p in (ST / "bad").glob("*.safetensors")))
def test_malformed_safetensors_is_one_error_line_and_no_output(bissl, tmp_path, bad):
    out = tmp_path / "out.safetensors"
    proc = bissl("convert", ST / "bad" / bad, out, "--to", "safetensors", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_object_npz_refused_without_unpickling(bissl, tmp_path):
    out = tmp_path / "out.safetensors"
    proc = bissl("convert", NPZ / "object.npz", out, "--to", "safetensors", check=False)
    assert proc.returncode != 0 and "meta" in proc.stderr
    assert list(tmp_path.iterdir()) == []
