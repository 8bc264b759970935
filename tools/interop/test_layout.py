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


def test_indexed_children_of_byol_import_with_the_files_tensors_and_predict_as_torch(bissl, tmp_path):
    """sthalles/PyTorch-BYOL's checkpoint (tools/fixtures/make_byol_sequential_fixture.py): the online
    encoder, kept as `nn.Sequential(*list(resnet.children())[:-1])`, is the backbone; its tensors are
    the file's, and `predict --features` matches that Sequential run by torch in eval mode, within the
    bound of tools/interop/test_predict.py (max abs error <= 1e-4 x max |reference|)."""
    sys.path.insert(0, str(ROOT / "tools" / "fixtures"))
    from make_byol_sequential_fixture import encoder  # noqa: E402
    from test_predict import assert_close  # noqa: E402
    import numpy as np

    src = LAYOUT / "byol_sequential.pth"
    online = torch.load(src, weights_only=True)["online_network_state_dict"]
    children = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    expected = {}
    for key, tensor in online.items():
        if key.startswith("encoder."):
            index, rest = key[len("encoder."):].split(".", 1)
            expected[children[index] + "." + rest] = tensor
    out = tmp_path / "backbone.pth"
    bissl("convert", src, out, "--component", "backbone")
    ours = torch.load(out, weights_only=True)
    assert set(ours) == set(expected)
    assert all(torch.equal(ours[k], expected[k]) for k in ours)
    ResNet(18, width=1, stem="imagenet", num_classes=0).load_state_dict(ours, strict=True)

    zoo = tmp_path / "zoo"
    report = json.loads(bissl("import", src, "--zoo", zoo, "--name", "byol", "--json").stdout)
    entry = report["id"]
    assert any("as torchvision ResNet children by index" in rule for rule in report["rules"]), report["rules"]
    x = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    bissl("predict", entry, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--features", "--zoo", zoo)
    net = encoder(ResNet(18, width=1, stem="imagenet", num_classes=0))
    net.load_state_dict({k[len("encoder."):]: v for k, v in online.items() if k.startswith("encoder.")}, strict=True)
    net.eval()
    with torch.no_grad():
        want = torch.flatten(net(torch.from_numpy(x)), 1).numpy()
    assert_close(np.load(tmp_path / "y.npy"), want)
