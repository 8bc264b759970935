"""Layout resolution end to end: real torch checkpoints in wild layouts, converted by bissl, loaded
strictly by torch into the reference ResNet (tools/reference_resnet.py)."""
import json
import pathlib
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_resnet import ResNet  # noqa: E402

LAYOUT = ROOT / "Tests" / "Fixtures" / "layout"


def source_tensors(path, key_path, prefix):
    """The tensors under key_path (dotted) whose keys start with prefix, prefix removed: derived with torch."""
    obj = torch.load(path, weights_only=True)
    for part in filter(None, key_path.split(".")):
        obj = obj[part]
    return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix) and torch.is_tensor(v)}


@pytest.mark.parametrize("name,key_path,prefix", [
    ("c2_byol.pth", "state_dict", "encoder."),
    ("c1_module_all.pth", "", "module."),
])
def test_backbone_export_loads_strictly(bissl, tmp_path, name, key_path, prefix):
    out = tmp_path / "backbone.pth"
    bissl("convert", LAYOUT / name, out, "--component", "backbone")
    ours = torch.load(out, weights_only=True)
    model = ResNet(50, width=1, stem="small", num_classes=0)
    model.load_state_dict(ours, strict=True)
    expected = source_tensors(LAYOUT / name, key_path, prefix)
    for key, tensor in ours.items():
        assert torch.equal(tensor, expected[key]), key


def test_teacher_student_needs_select_and_keeps_the_branch(bissl, tmp_path):
    src = LAYOUT / "c4_teacher_student.pth"
    refused = bissl("convert", src, tmp_path / "x.pth", check=False)
    assert refused.returncode != 0 and "--select" in refused.stderr
    assert not (tmp_path / "x.pth").exists()
    out = tmp_path / "teacher.h5"
    bissl("convert", src, out, "--select", "teacher.backbone")
    source = json.loads(bissl("inspect", out, "--json").stdout)["provenance"]["source"]
    assert (source["keyPath"], source["strippedPrefix"]) == ("teacher", "backbone.")
    pth = tmp_path / "teacher.pth"
    bissl("convert", out, pth)
    expected = source_tensors(src, "teacher", "backbone.")
    ours = torch.load(pth, weights_only=True)
    assert set(ours) == set(expected)
    assert all(torch.equal(ours[k], expected[k]) for k in ours)
