"""Failure paths of the writers, run as separate processes: a full disk, a signal mid-write,
symlinked outputs, odd inputs. Each test names the defect it guards against."""
import os
import resource
import signal
import subprocess
import time

import numpy as np
import pytest
import torch


def _run_limited(args, fsize):
    """Runs bissl with RLIMIT_FSIZE=fsize and SIGXFSZ ignored, so writes past it fail with EFBIG
    as on a full disk instead of killing the process."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([os.environ["BISSL"], *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limit)


@pytest.mark.parametrize("fmt", ["h5", "safetensors", "npz", "pth"])
def test_full_disk_is_one_error_line_not_a_crash(tmp_path, fmt):
    # HDF5's atexit shutdown used to segfault (exit 139) after a failed H5Fclose.
    torch.manual_seed(0)
    src = tmp_path / "big.pth"
    torch.save({f"layer{i}.weight": torch.randn(64, 512, dtype=torch.float64) for i in range(6)}, src)
    assert src.stat().st_size > 1_400_000
    out = tmp_path / "sub" / f"out.{fmt}"
    out.parent.mkdir()
    proc = _run_limited(["convert", src, out], 1 << 20)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {out}"), proc.stderr[-2000:]
    assert os.listdir(out.parent) == []
