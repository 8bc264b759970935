"""`bissl convert --dtype`: values equal torch's own `.to(dtype)`; BN running statistics keep their precision
unless --cast-buffers."""
import pathlib

import pytest
import torch
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "Tests" / "Fixtures" / "pth" / "resnet18_w2.pth"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.mark.parametrize("name,dtype", [("float16", torch.float16), ("bfloat16", torch.bfloat16)])
@pytest.mark.parametrize("cast_buffers", [False, True])
def test_cast_matches_torch(bissl, tmp_path, name, dtype, cast_buffers):
    out = tmp_path / "cast.safetensors"
    bissl("convert", SRC, out, "--dtype", name, *(["--cast-buffers"] if cast_buffers else []))
    ours = load_file(out)
    source = torch.load(SRC, weights_only=True)
    assert set(ours) == set(source)
    for key, t in source.items():
        is_buffer = key.endswith(BUFFERS[:2])
        expected = t.to(dtype) if t.is_floating_point() and (cast_buffers or not is_buffer) else t
        assert ours[key].dtype == expected.dtype, key
        assert torch.equal(ours[key], expected), key


def test_overflow_and_underflow_are_named(bissl, tmp_path):
    sd = torch.load(SRC, weights_only=True)
    sd["conv1.weight"].view(-1)[0] = 1e5      # above float16's largest finite value, 65504
    sd["fc.weight"].view(-1)[0] = 1e-9        # below float16's smallest subnormal, ~6e-8
    src = tmp_path / "extreme.pth"
    torch.save(sd, src)
    out = bissl("convert", src, tmp_path / "x.safetensors", "--dtype", "float16").stdout
    warnings = [line for line in out.splitlines() if line.strip().startswith("warning:")]
    assert any("conv1.weight" in w for w in warnings), out
    assert any("fc.weight" in w for w in warnings), out
    assert not any("bn1.running_var" in w for w in warnings), out
