"""`bissl export REF -o model.onnx` against the real ONNX packages: onnx.checker (full check, with
shape inference) accepts the model, and onnxruntime's outputs match `bissl predict` and the
plain-torch reference (tools/reference_resnet.py) in eval mode, for ResNet-18 and ResNet-50 with both
stems, with BatchNorm as the ONNX operator and folded into the convolutions (`--fold-bn`).

Tolerance: max |a - b| <= 1e-4 x max |reference|, with the reference in float64. Each output is a
chain of L float32 layers (L = 21 for ResNet-18, 54 for ResNet-50) whose dot products have K <= 576
terms here (narrow models); rounding errors of size u = 2^-24 per operation accumulate like a random
walk, about sqrt(L) * sqrt(K) * u ~ 1e-5 relative at most for these sizes, whatever order ONNX Runtime,
OpenBLAS or PyTorch sum in, and BN folding adds one rounding per weight. 1e-4 leaves a factor of ten
over that; each test also checks that torch's own float32 result is within 1e-5 of float64, so the
bound is about rounding and a miss is a real difference.
"""
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_resnet import ResNet, randomized  # noqa: E402

MODELS = {
    "r18_small": lambda: ResNet(18, width=4, stem="small", num_classes=10),
    "r18_imagenet": lambda: ResNet(18, width=4, stem="imagenet", num_classes=10),
    "r50_small": lambda: ResNet(50, width=2, stem="small", num_classes=7),
    "r50_imagenet": lambda: ResNet(50, width=2, stem="imagenet", num_classes=7),
}


@pytest.fixture(scope="module")
def zoo(bissl, tmp_path_factory):
    """One zoo holding every model of MODELS (imported from its torch state dict), by name."""
    root = tmp_path_factory.mktemp("onnx")
    models, ids = {}, {}
    for i, (name, make) in enumerate(sorted(MODELS.items())):
        model = randomized(make(), seed=10 + i).eval()
        path = root / f"{name}.pth"
        torch.save(model.state_dict(), path)
        ids[name] = json.loads(bissl("import", path, "--zoo", root / "zoo", "--name", name, "--json").stdout)["id"]
        models[name] = model
    return root, models, ids


def run_onnx(path, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    return out


def torch_out(model, x, features, dtype=torch.float64):
    m = model.to(dtype)
    with torch.no_grad():
        t = torch.from_numpy(x).to(dtype)
        y = (m.forward_features(t) if features else m(t)).numpy()
    model.to(torch.float32)
    return y


def relative_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def check_against_references(bissl, root, model, entry, onnx_path, x, features):
    want = torch_out(model, x, features)
    assert relative_error(torch_out(model, x, features, torch.float32), want) <= 1e-5
    got = run_onnx(onnx_path, x)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert relative_error(got, want) <= 1e-4
    xpath, ypath = root / "x.npy", root / "y.npy"
    np.save(xpath, x)
    bissl("predict", entry, "--input", xpath, "--output", ypath, "--features" if features else "--logits",
          "--zoo", root / "zoo")
    assert relative_error(np.load(ypath), want) <= 1e-4
    assert relative_error(got, np.load(ypath).astype(np.float64)) <= 1e-4


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "fold-bn"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_torch_and_predict(bissl, zoo, name, fold):
    root, models, ids = zoo
    out = root / f"{name}-{fold}.onnx"
    args = ["--fold-bn"] if fold else []
    printed = bissl("export", name, "-o", out, "--zoo", root / "zoo", *args).stdout
    assert printed.startswith(f"wrote {out} (onnx, entry {ids[name][:12]}")

    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17 and model.opset_import[0].domain in ("", "ai.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert ("BatchNormalization" in ops) != fold
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["bissl.content_id"] == ids[name]
    assert json.loads(meta["bissl.provenance"])["stage"] == "imported"
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]

    rng = np.random.default_rng(5)
    # Two batch sizes and two image sizes through the same model: the batch (and H, W) are dynamic.
    for shape in [(3, 3, 32, 32), (1, 3, 40, 36)]:
        x = rng.standard_normal(shape).astype(np.float32)
        check_against_references(bissl, root, models[name], ids[name], out, x, features=False)


def test_features_output_and_convert_from_h5(bissl, zoo):
    """--features gives the pooled embedding; `convert X.h5 model.onnx` writes the same bytes as
    `export` of the entry the .h5 holds."""
    root, models, ids = zoo
    name = "r18_small"
    out = root / "features.onnx"
    bissl("export", name, "-o", out, "--features", "--fold-bn", "--zoo", root / "zoo")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    x = np.random.default_rng(6).standard_normal((2, 3, 24, 24)).astype(np.float32)
    check_against_references(bissl, root, models[name], ids[name], out, x, features=True)

    h5, converted = root / "entry.h5", root / "converted.onnx"
    bissl("export", name, "-o", h5, "--zoo", root / "zoo")
    bissl("convert", h5, converted, "--features", "--fold-bn")
    assert converted.read_bytes() == out.read_bytes()


def test_onnx_refusals(bissl, zoo, tmp_path):
    root, _, _ = zoo
    for args, message in [
        (["--legacy"], "--legacy applies only to pth output, not onnx"),
        (["--bf16", "bits"], "--bf16 applies only to npz output, not onnx"),
    ]:
        proc = bissl("export", "r18_small", "-o", tmp_path / "m.onnx", "--zoo", root / "zoo", *args, check=False)
        assert proc.returncode != 0 and proc.stderr.strip() == f"error: {message}"
    proc = bissl("export", "r18_small", "-o", tmp_path / "m.pth", "--fold-bn", "--zoo", root / "zoo", check=False)
    assert proc.returncode != 0 and proc.stderr.strip() == "error: --fold-bn applies only to onnx output, not pth"
    assert not any(tmp_path.iterdir())
