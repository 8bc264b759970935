"""The zoo end to end with the real readers: entries exported as .pth / safetensors / .npz / .h5 load
in torch, safetensors, numpy and h5py with the source's exact values; provenance `show --json` prints
validates against schemas/provenance.schema.json; `diff` of two entries matches torch's numbers."""
import json
import pathlib
import sys

import h5py
import jsonschema
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_resnet import ResNet  # noqa: E402

FIX = ROOT / "Tests" / "Fixtures"
SCHEMA = json.loads((ROOT / "schemas" / "provenance.schema.json").read_text())


@pytest.fixture
def zoo(tmp_path):
    return str(tmp_path / "zoo")


def escape(name):
    """Link name of a key (schemas/checkpoint-v1.md, "Name escaping")."""
    name = name.replace("%", "%25").replace("/", "%2F")
    return "%2E" if name == "." else (name or "%")


def imported(bissl, zoo, path, *args):
    out = bissl("import", path, "--zoo", zoo, "--json", *args).stdout
    return json.loads(out)


def test_import_then_export_pth_loads_strictly_with_source_values(bissl, zoo, tmp_path):
    src = FIX / "layout" / "c1_module_all.pth"
    entry = imported(bissl, zoo, src, "--name", "r50")
    assert entry["added"] is True and len(entry["id"]) == 64
    again = imported(bissl, zoo, src)
    assert again["added"] is False and again["id"] == entry["id"]

    out = tmp_path / "r50.pth"
    bissl("export", "r50", "-o", out, "--zoo", zoo, "--component", "backbone")
    ours = torch.load(out, weights_only=True)
    ResNet(50, width=1, stem="small", num_classes=0).load_state_dict(ours, strict=True)
    source = {k[len("module."):]: v for k, v in torch.load(src, weights_only=True).items()}
    for key, tensor in ours.items():
        assert torch.equal(tensor, source[key]), key


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "h5"])
def test_export_formats_hold_the_source_values(bissl, zoo, tmp_path, fmt):
    src = FIX / "layout" / "r18.pth"
    entry = imported(bissl, zoo, src)
    out = tmp_path / f"out.{fmt}"
    bissl("export", entry["id"][:8], "-o", out, "--zoo", zoo)
    source = torch.load(src, weights_only=True)
    if fmt == "safetensors":
        got = {k: v.numpy() for k, v in load_file(str(out)).items()}
    elif fmt == "npz":
        with np.load(out) as z:
            got = {k: z[k] for k in z.files}
    else:
        with h5py.File(out, "r") as f:
            assert f.attrs["content_id"] == entry["id"]
            got = {}
            for comp in f["components"].asstr()[()]:
                for key in f["keys"][escape(comp)].asstr()[()]:
                    got[key] = f["tensors"][escape(comp)][escape(key)][()]
    assert set(got) == set(source)
    for key, tensor in source.items():
        np.testing.assert_array_equal(got[key], tensor.numpy(), err_msg=key)


def test_show_json_provenance_validates_against_the_schema(bissl, zoo):
    for src in [FIX / "layout" / "c2_byol.pth", FIX / "layout" / "c16_cuda.pth", FIX / "safetensors" / "resnet18_w4.safetensors"]:
        entry = imported(bissl, zoo, src)
        shown = json.loads(bissl("show", entry["id"], "--zoo", zoo, "--json").stdout)
        jsonschema.validate(shown["provenance"], SCHEMA)
        assert shown["provenance"]["source"]["fileName"] == src.name


def test_diff_of_two_entries_matches_torch(bissl, zoo):
    expected = json.loads((FIX / "diff" / "expected.json").read_text())["c4"]
    # tools/fixtures/make_diff_fixtures.py computed the expectations as student -> teacher.
    a = imported(bissl, zoo, FIX / "diff" / "c4_student.pth")["id"]
    b = imported(bissl, zoo, FIX / "diff" / "c4_teacher.pth")["id"]
    diff = json.loads(bissl("diff", a, b, "--zoo", zoo, "--json", "--tensors", "all").stdout)
    ours = {t["name"]: t for s in diff["sections"] for t in s["tensors"]}
    checked = 0
    for name, want in expected.get("tensors", {}).items():
        got = ours[name]["delta"]
        for ours_key, torch_key in [("l2", "l2"), ("relative", "relative"), ("cosine", "cosine"), ("maxAbs", "max_abs")]:
            if want.get(torch_key) is not None:
                assert got[ours_key] == pytest.approx(want[torch_key], rel=1e-6, abs=1e-9), (name, ours_key)
        checked += 1
    assert checked > 0
