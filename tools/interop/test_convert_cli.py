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
