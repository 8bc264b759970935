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
    assert lines[0].endswith(": File too large"), lines[0]   # strerror(EFBIG), not Foundation's wording
    assert os.listdir(out.parent) == []


@pytest.mark.parametrize("fmt", ["h5", "pth"])
def test_full_tmpfs_is_one_error_line_not_a_crash(tmp_path, fmt):
    # The tester's case: a 1 MB tmpfs (needs root and mount(2); skipped where not permitted).
    torch.manual_seed(0)
    src = tmp_path / "big.pth"
    torch.save({f"layer{i}.weight": torch.randn(64, 512, dtype=torch.float64) for i in range(6)}, src)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        out = tiny / f"out.{fmt}"
        proc = subprocess.run([os.environ["BISSL"], "convert", src, out], capture_output=True, text=True)
        assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr[-2000:]
        assert proc.stderr.strip().endswith(": No space left on device"), proc.stderr
        assert os.listdir(tiny) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


@pytest.fixture(scope="module")
def large_safetensors(tmp_path_factory):
    """~50 MB of float32 tensors."""
    from safetensors.numpy import save_file
    path = tmp_path_factory.mktemp("large") / "large.safetensors"
    rng = np.random.default_rng(0)
    save_file({f"blocks.{i}.weight": rng.standard_normal((1024, 1024), dtype=np.float32) for i in range(12)}, str(path))
    assert path.stat().st_size > 48_000_000
    return path


@pytest.mark.parametrize("fmt,extra,sig", [("pth", [], signal.SIGINT), ("pth", ["--legacy"], signal.SIGINT),
                                           ("h5", [], signal.SIGINT), ("npz", [], signal.SIGTERM),
                                           ("safetensors", [], signal.SIGTERM)])
def test_signal_mid_write_leaves_no_temporary(tmp_path, large_safetensors, fmt, extra, sig):
    # An interrupted convert used to leave `.out.pth.zip-PID-...` / `.out.h5.tmp-...` behind, and
    # FileManager.createFile its own `.dat.nosync...` (the legacy writer's whole file).
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"out.{fmt}"
    proc = subprocess.Popen([os.environ["BISSL"], "convert", large_safetensors, out, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    seen = None
    while proc.poll() is None and time.monotonic() < deadline:
        names = os.listdir(out_dir)
        if names:
            seen = names
            break
        time.sleep(0.0005)
    assert seen and all(n.startswith(".") for n in seen), f"no temporary seen before exit: {seen}"
    assert not any(n.startswith(".dat.nosync") for n in seen), seen
    proc.send_signal(sig)
    proc.wait(timeout=60)
    # StopRequest takes the signal over: one error line, exit 128 + signal, as a shell reports a kill.
    err = proc.stderr.read()
    assert proc.returncode == 128 + sig, err
    assert err.decode().strip().endswith("stopped by " + ("SIGINT" if sig == signal.SIGINT else "SIGTERM")), err
    assert os.listdir(out_dir) == []
