"""Through the CLI: tied tensors (two names, one storage, same view) survive conversion.

Inputs are torch-written fixtures: Tests/Fixtures/pth/c6_alias.pth (tools/fixtures/make_pth_fixtures.py:
`encoder.weight` and `decoder.weight` are one tensor; `window`, `matrix`, `transposed` and `strided`
are other views of `base`'s storage, which are not aliases) and Tests/Fixtures/layout/aliases.pth (a
ResNet-18 whose `layer1.0.bn2.running_mean` is `layer1.0.bn1.running_mean`). Which names torch itself
ties is read from torch.load of the original (same storage pointer, offset, shape and stride), then:
- `bissl convert X out.h5`: h5py sees both names with equal data, and they are one HDF5 object
  (equal object ids and `h5py.h5o.get_info(...).addr`); other names are separate objects; the stored
  content id equals tools/fixtures/h5_content_id.py's over every name;
- `bissl convert out.h5 back.pth` (zip and --legacy): torch.load gives tensors on one storage
  (`untyped_storage().data_ptr()` equal), every value equal to the original;
- `--to safetensors` / `--to npz`: a `note:` line says the alias became a separate copy, and
  safetensors / numpy load both names with equal data.
"""
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "fixtures"))
from h5_content_id import content_id, read_h5  # noqa: E402

C6 = ROOT / "Tests" / "Fixtures" / "pth" / "c6_alias.pth"
RESNET = ROOT / "Tests" / "Fixtures" / "layout" / "aliases.pth"


def torch_aliases(sd):
    """{later name: first name} for names torch put on one storage with the same view."""
    first, out = {}, {}
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor) or t.numel() == 0:
            continue
        view = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if view in first:
            out[name] = first[view]
        else:
            first[view] = name
    return out


def addr(obj):
    return h5py.h5o.get_info(obj.id).addr


def test_torch_ties_exactly_encoder_and_decoder():
    assert torch_aliases(torch.load(C6, weights_only=True)) == {"decoder.weight": "encoder.weight"}
    assert torch_aliases(torch.load(RESNET, weights_only=True)) == {
        "layer1.0.bn2.running_mean": "layer1.0.bn1.running_mean"}


def test_h5_holds_an_alias_once_as_one_object(bissl, tmp_path):
    src = torch.load(C6, weights_only=True)
    out = tmp_path / "out.h5"
    bissl("convert", C6, out)
    with h5py.File(out, "r") as f:
        g = f["tensors"]["tensors"]
        assert sorted(g.keys()) == sorted(src)
        for name, t in src.items():
            np.testing.assert_array_equal(g[name][()], t.numpy())
        assert g["decoder.weight"].id == g["encoder.weight"].id
        assert addr(g["decoder.weight"]) == addr(g["encoder.weight"])
        others = {addr(g[n]) for n in src if n != "decoder.weight"}
        assert len(others) == len(src) - 1, "only the tied pair shares an object"
        assert h5py.h5o.get_info(g["encoder.weight"].id).rc == 2   # two hard links to one object
        stored = f.attrs["content_id"]
    # The content id (spec-only reimplementation) covers both names with their bytes, linked or not.
    assert content_id(*read_h5(out)) == (stored.decode() if isinstance(stored, bytes) else stored)


def test_resnet_alias_in_backbone_uses_torchvision_names(bissl, tmp_path):
    src = torch.load(RESNET, weights_only=True)
    out = tmp_path / "r.h5"
    proc = bissl("convert", RESNET, out)
    assert "layer1.0.bn2.running_mean = layer1.0.bn1.running_mean" in proc.stdout
    with h5py.File(out, "r") as f:
        g = f["tensors"]["backbone"]
        assert addr(g["layer1.0.bn2.running_mean"]) == addr(g["layer1.0.bn1.running_mean"])
        assert addr(g["layer1.0.bn2.running_var"]) != addr(g["layer1.0.bn1.running_var"])
        np.testing.assert_array_equal(g["layer1.0.bn2.running_mean"][()], src["layer1.0.bn1.running_mean"].numpy())
    back = tmp_path / "r.pth"
    bissl("convert", out, back)
    sd = torch.load(back, weights_only=True)
    assert torch_aliases(sd) == {"layer1.0.bn2.running_mean": "layer1.0.bn1.running_mean"}


def test_pth_from_h5_shares_storage_zip_and_legacy(bissl, tmp_path):
    src = torch.load(C6, weights_only=True)
    h5 = tmp_path / "out.h5"
    bissl("convert", C6, h5)
    for legacy in (False, True):
        back = tmp_path / ("legacy.pth" if legacy else "back.pth")
        bissl("convert", h5, back, *(["--legacy"] if legacy else []))
        sd = torch.load(back, weights_only=True)
        a, b = sd["encoder.weight"], sd["decoder.weight"]
        assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr(), legacy
        assert a.storage_offset() == b.storage_offset() == 0
        assert torch_aliases(sd) == {"decoder.weight": "encoder.weight"}
        for name, t in src.items():
            assert torch.equal(sd[name], t), (legacy, name)
        # Really one storage: a write through one name shows through the other, as with torch's tied weights.
        a.add_(1.0)
        assert torch.equal(b, src["encoder.weight"] + 1.0)
        assert torch.equal(sd["base"], src["base"]), "untied names keep their own storage"


def test_pth_to_pth_direct_keeps_sharing(bissl, tmp_path):
    back = tmp_path / "direct.pth"
    proc = bissl("convert", C6, back)
    assert "note:" not in proc.stdout
    sd = torch.load(back, weights_only=True)
    assert sd["encoder.weight"].untyped_storage().data_ptr() == sd["decoder.weight"].untyped_storage().data_ptr()


def test_safetensors_and_npz_write_copies_and_say_so(bissl, tmp_path):
    src = torch.load(C6, weights_only=True)
    h5 = tmp_path / "out.h5"
    bissl("convert", C6, h5)
    for source in (C6, h5):
        st = tmp_path / "out.safetensors"
        proc = bissl("convert", source, st, "--to", "safetensors")
        assert ("  note: 1 aliased tensor (decoder.weight = encoder.weight) written as a separate copy: "
                "safetensors cannot share storage") in proc.stdout.splitlines()
        loaded = load_file(st)
        assert sorted(loaded) == sorted(src)
        assert torch.equal(loaded["decoder.weight"], src["encoder.weight"])
        assert torch.equal(loaded["encoder.weight"], src["encoder.weight"])

        npz = tmp_path / "out.npz"
        proc = bissl("convert", source, npz, "--to", "npz")
        assert ("  note: 1 aliased tensor (decoder.weight = encoder.weight) written as a separate copy: "
                "npz cannot share storage") in proc.stdout.splitlines()
        with np.load(npz) as z:
            np.testing.assert_array_equal(z["decoder.weight"], src["encoder.weight"].numpy())
            np.testing.assert_array_equal(z["encoder.weight"], src["encoder.weight"].numpy())


def test_no_note_without_aliases(bissl, tmp_path):
    proc = bissl("convert", ROOT / "Tests" / "Fixtures" / "pth" / "c7_little.pth", tmp_path / "x.safetensors")
    assert "note:" not in proc.stdout
