"""`bissl predict` against PyTorch: a torch model's state dict is imported into a fresh zoo, the CLI
runs it on a seeded batch and its features/logits must match the same torch model in eval mode
(max abs error <= 1e-4 x max |reference|). Bad inputs give one `error:` line, a non-zero exit and
no output file."""
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_resnet import ResNet, randomized  # noqa: E402


def imported(bissl, zoo, model, tmp_path, name):
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    out = bissl("import", path, "--zoo", zoo, "--name", name, "--json").stdout
    return json.loads(out)["id"]


@pytest.fixture
def zoo(tmp_path):
    return str(tmp_path / "zoo")


@pytest.fixture
def images(tmp_path):
    x = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    return x, path


MODELS = {
    "r18_small": lambda: ResNet(18, width=4, stem="small", num_classes=10),
    "r50_imagenet": lambda: ResNet(50, width=2, num_classes=7),
}


def reference(model, x, features):
    model.eval()
    with torch.no_grad():
        t = torch.from_numpy(x)
        return (model.forward_features(t) if features else model(t)).numpy()


def assert_close(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 0
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= 1e-4 * scale, f"max abs error {err} > 1e-4 x {scale}"


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("what", ["logits", "features"])
def test_predict_matches_torch_eval(bissl, zoo, tmp_path, images, arch, what):
    model = randomized(MODELS[arch](), seed=3)
    entry = imported(bissl, zoo, model, tmp_path, arch)
    x, xpath = images
    out = tmp_path / "y.npy"
    bissl("predict", entry, "--input", xpath, "--output", out, f"--{what}", "--zoo", zoo)
    assert_close(np.load(out), reference(model, x, features=(what == "features")))


def test_default_is_logits_with_summary_of_top1(bissl, zoo, tmp_path, images):
    model = randomized(MODELS["r18_small"](), seed=4)
    imported(bissl, zoo, model, tmp_path, "r18")
    x, xpath = images
    out = tmp_path / "y.npy"
    proc = bissl("predict", "r18", "--input", xpath, "-o", out, "--zoo", zoo, "--json")
    want = reference(model, x, features=False)
    assert_close(np.load(out), want)
    summary = json.loads(proc.stdout)
    assert summary["kind"] == "logits" and summary["shape"] == [3, 10]
    assert summary["top1"] == want.argmax(axis=1).tolist()
    # Without --output nothing is written; the text summary names shape and top-1 classes.
    text = bissl("predict", "r18", "--input", xpath, "--zoo", zoo).stdout
    assert "logits [3, 10]" in text
    assert "top-1: " + " ".join(map(str, want.argmax(axis=1))) in text


def test_float64_input_is_rounded_to_float32(bissl, zoo, tmp_path, images):
    model = randomized(MODELS["r18_small"](), seed=5)
    imported(bissl, zoo, model, tmp_path, "r18")
    x, _ = images
    path64 = tmp_path / "x64.npy"
    np.save(path64, x.astype(np.float64))
    out = tmp_path / "y.npy"
    bissl("predict", "r18", "--input", path64, "-o", out, "--features", "--zoo", zoo)
    assert_close(np.load(out), reference(model, x, features=True))


def test_backbone_only_defaults_to_features_and_refuses_logits(bissl, zoo, tmp_path, images):
    model = randomized(ResNet(18, width=4, stem="small", num_classes=0), seed=6)
    imported(bissl, zoo, model, tmp_path, "bb")
    x, xpath = images
    out = tmp_path / "y.npy"
    bissl("predict", "bb", "--input", xpath, "-o", out, "--zoo", zoo)
    assert_close(np.load(out), reference(model, x, features=True))
    out.unlink()
    proc = bissl("predict", "bb", "--input", xpath, "-o", out, "--logits", "--zoo", zoo, check=False)
    assert proc.returncode != 0 and not out.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "classifier" in lines[0]


BAD_INPUTS = {
    "int_dtype": lambda: np.zeros((2, 3, 8, 8), dtype=np.int32),
    "float16": lambda: np.zeros((2, 3, 8, 8), dtype=np.float16),
    "three_dims": lambda: np.zeros((3, 8, 8), dtype=np.float32),
    "nhwc": lambda: np.zeros((2, 8, 8, 3), dtype=np.float32),
    "one_channel": lambda: np.zeros((2, 1, 8, 8), dtype=np.float32),
    "empty_batch": lambda: np.zeros((0, 3, 8, 8), dtype=np.float32),
    "nan": lambda: np.full((1, 3, 8, 8), np.nan, dtype=np.float32),
    "object": lambda: np.array([[1, "a"]], dtype=object),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_error_line_no_output(bissl, zoo, tmp_path, case):
    imported(bissl, zoo, randomized(MODELS["r18_small"]()), tmp_path, "r18")
    path = tmp_path / "bad.npy"
    np.save(path, BAD_INPUTS[case](), allow_pickle=True)
    out = tmp_path / "y.npy"
    proc = bissl("predict", "r18", "--input", path, "-o", out, "--zoo", zoo, check=False)
    assert proc.returncode != 0
    assert not out.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_missing_input_and_not_npy(bissl, zoo, tmp_path):
    imported(bissl, zoo, randomized(MODELS["r18_small"]()), tmp_path, "r18")
    out = tmp_path / "y.npy"
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file at all")
    for path in (tmp_path / "absent.npy", junk):
        proc = bissl("predict", "r18", "--input", path, "-o", out, "--zoo", zoo, check=False)
        assert proc.returncode != 0 and not out.exists()
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
