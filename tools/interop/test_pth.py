"""Interop lane for PyTorch .pth: what `bissl convert` writes, real torch loads.

- torch.load(weights_only=True) then load_state_dict(strict=True) into the reference ResNet accepts
  our zip and legacy files, with every tensor bit-identical to the torch-written fixture;
- Python's zipfile re-reads every record and checks its CRC (testzip), and every record's data
  starts at a 64-byte aligned offset, as torch writes them;
- bad inputs fail with one `error:` line and leave no output file.

Run: make release && BISSL=.build/release/bissl python3 -m pytest tools/interop/test_pth.py
"""
import os
import sys
import zipfile

import pytest

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "pth")
sys.path.insert(0, os.path.join(ROOT, "tools"))
from reference_resnet import ResNet  # noqa: E402


def raw(t):
    """The tensor's bytes in C order (a fresh storage of exactly its elements)."""
    return bytes(t.contiguous().clone().untyped_storage())


def assert_same_state_dict(ours, ref):
    assert list(ours) == list(ref)
    for k, b in ref.items():
        a = ours[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert a.is_contiguous(), k
        assert raw(a) == raw(b), k


def data_offsets(path):
    """File offset of each record's data, from its local header (as torch's getRecordOffset)."""
    with open(path, "rb") as f:
        blob = f.read()
    with zipfile.ZipFile(path) as z:
        out = {}
        for info in z.infolist():
            h = info.header_offset
            name_len = int.from_bytes(blob[h + 26:h + 28], "little")
            extra_len = int.from_bytes(blob[h + 28:h + 30], "little")
            out[info.filename] = h + 30 + name_len + extra_len
        return out


MODELS = [("resnet18_w2.pth", 18, 2), ("resnet18_w2_legacy.pth", 18, 2), ("resnet50_w1.pth", 50, 1)]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("fixture,depth,width", MODELS)
def test_torch_loads_our_pth_strictly(bissl, tmp_path, fixture, depth, width, legacy):
    out = tmp_path / "converted.pth"
    bissl("convert", os.path.join(FIX, fixture), out, "--to", "pth", *(["--legacy"] if legacy else []))
    ours = torch.load(out, weights_only=True)
    ref = torch.load(os.path.join(FIX, fixture), weights_only=True)
    assert_same_state_dict(ours, ref)
    ResNet(depth, width=width, stem="small", num_classes=10).load_state_dict(ours, strict=True)
    assert ours._metadata["bn1"]["version"] == 2
    assert zipfile.is_zipfile(out) != legacy
    if not legacy:
        with zipfile.ZipFile(out) as z:
            assert z.testzip() is None
            names = z.namelist()
            assert all(n.startswith("converted/") for n in names)
            assert names[:4] == ["converted/data.pkl", "converted/.format_version",
                                 "converted/.storage_alignment", "converted/byteorder"]
            assert names[-2:] == ["converted/version", "converted/.data/serialization_id"]
            assert z.read("converted/byteorder") == b"little"
            assert z.read("converted/version") == b"3\n"
            assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        assert all(off % 64 == 0 for off in data_offsets(out).values())


def test_our_pickle_is_byte_identical_to_torch_save_of_the_same_state_dict(bissl, tmp_path):
    """Same keys, tensors and `_metadata` saved by torch.save: data.pkl must match byte for byte."""
    import collections
    ours_path = tmp_path / "ours.pth"
    bissl("convert", os.path.join(FIX, "resnet50_w1.pth"), ours_path, "--to", "pth")
    ours = torch.load(ours_path, weights_only=True)
    same = collections.OrderedDict((k, v.clone()) for k, v in ours.items())
    same._metadata = collections.OrderedDict((k, dict(v)) for k, v in ours._metadata.items())
    torch_path = tmp_path / "ours_by_torch" / "ours.pth"
    torch_path.parent.mkdir()
    torch.save(same, torch_path)
    with zipfile.ZipFile(ours_path) as a, zipfile.ZipFile(torch_path) as b:
        assert a.read("ours/data.pkl") == b.read("ours/data.pkl")
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            if not name.endswith("serialization_id"):
                assert a.read(name) == b.read(name), name


def test_round_trip_through_bissl_h5(bissl, tmp_path):
    h5 = tmp_path / "model.h5"
    back = tmp_path / "back.pth"
    bissl("convert", os.path.join(FIX, "resnet18_w2.pth"), h5, "--to", "h5")
    bissl("convert", h5, back, "--to", "pth")
    ours = torch.load(back, weights_only=True)
    assert_same_state_dict(ours, torch.load(os.path.join(FIX, "resnet18_w2.pth"), weights_only=True))
    ResNet(18, width=2, stem="small", num_classes=10).load_state_dict(ours, strict=True)


def test_big_endian_and_missing_byteorder_convert_to_the_same_values(bissl, tmp_path):
    ref = torch.load(os.path.join(FIX, "c7_little.pth"), weights_only=True)
    for name in ("c7_big.pth", "c7_no_byteorder.pth"):
        out = tmp_path / name
        bissl("convert", os.path.join(FIX, name), out, "--to", "pth")
        assert_same_state_dict(torch.load(out, weights_only=True), ref)


BAD = [
    ("c8_truncated.pth", "truncated ZIP: file is"),
    ("c8_flipped.pth", "CRC mismatch in resnet18_w2/data/0 (tensor conv1.weight)"),
    ("c9_html.pth", "c9_html.pth is an HTML page"),
    ("c9_lfs.pth", "Git LFS pointer"),
    ("c10_pickle_p4.pth", "__main__.TinyModel"),
    ("torchscript.pt", "TorchScript"),
    ("unsafe_rebuild.pth", "evil.module._rebuild_tensor_v2"),
]


@pytest.mark.parametrize("fixture,message", BAD)
def test_bad_input_is_one_error_line_and_no_output(bissl, tmp_path, fixture, message):
    out = tmp_path / "out.pth"
    proc = bissl("convert", os.path.join(FIX, fixture), out, "--to", "pth", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []
