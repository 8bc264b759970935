"""`bissl convert`'s messages and refusals for inputs and options a user gets wrong, checked
against files written by torch / numpy / safetensors and read back with h5py."""
import json
import os
import sys

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reference_resnet import ResNet  # noqa: E402


def _resnet18():
    torch.manual_seed(0)
    return ResNet(18, width=4, stem="small").state_dict()


def test_stray_tensors_are_a_warning_recorded_in_provenance(bissl, tmp_path):
    sd = _resnet18()
    sd["ema_decay"] = torch.tensor(0.999)
    sd["foo"] = torch.zeros(3)
    src = tmp_path / "stray.pth"
    torch.save(sd, src)
    out = tmp_path / "out.h5"
    proc = bissl("convert", src, out)
    expected = "dropped 2 tensors that are not part of the model: ema_decay, foo"
    assert f"  warning: {expected}" in proc.stdout.splitlines(), proc.stdout
    with h5py.File(out) as f:
        assert expected in json.loads(f["provenance"][()])["warnings"]


@pytest.mark.parametrize("out,flag,message", [
    ("out.h5", "--legacy", "error: --legacy applies only to pth output, not h5"),
    ("out.safetensors", "--compress", "error: --compress applies only to npz output, not safetensors"),
])
def test_options_the_output_format_does_not_use_are_refused(bissl, tmp_path, out, flag, message):
    src = tmp_path / "r18.pth"
    torch.save(_resnet18(), src)
    proc = bissl("convert", src, tmp_path / out, flag, check=False)
    assert proc.returncode != 0 and proc.stderr.strip() == message, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["r18.pth"]


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "npz", "h5"])
def test_symlinked_output_is_written_through(bissl, tmp_path, fmt):
    sd = _resnet18()
    src = tmp_path / "r18.pth"
    torch.save(sd, src)
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / f"model.{fmt}"
    target.write_bytes(b"old")
    link = tmp_path / f"link.{fmt}"
    os.symlink(f"store/model.{fmt}", link)
    bissl("convert", src, link)
    assert os.path.islink(link) and os.readlink(link) == f"store/model.{fmt}"
    want = sd["layer1.0.conv1.weight"].numpy()
    if fmt == "pth":
        got = torch.load(target, weights_only=True)["layer1.0.conv1.weight"].numpy()
    elif fmt == "safetensors":
        from safetensors.numpy import load_file
        got = load_file(str(target))["layer1.0.conv1.weight"]
    elif fmt == "npz":
        got = np.load(target)["layer1.0.conv1.weight"]
    else:
        with h5py.File(target) as f:
            got = f["tensors/backbone/layer1.0.conv1.weight"][()]
    np.testing.assert_array_equal(got, want)
    assert [n for n in os.listdir(tmp_path / "store") if n.startswith(".")] == []
