"""Cost of reading an outside .h5 in the HDF5 reader process (README "Hostile input"): `bissl import`
and `bissl inspect --json` of a 100 MB ResNet-50 checkpoint, each with the reader process (default)
and in process (BISSL_HDF5_SANDBOX=0), trials interleaved, best of TRIALS; prints the machine's load
and CPU beside the figures. Besides wall clock it reports CPU time (user + system of bissl and of its
reader process, from RUSAGE_CHILDREN), which other work on a loaded machine disturbs far less.

Run: python3 tools/bench/sandbox_cost.py PATH/TO/bissl   (needs torch, as tools/bench/make_inputs.py)
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_inputs  # noqa: E402
from bench import cpu_model, warm  # noqa: E402

TRIALS = 7


def wall(argv, env):
    """(wall seconds, CPU seconds) of one run; CPU counts the reader process too (waited for by bissl)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(bissl):
    bissl = os.path.abspath(bissl)
    work = tempfile.mkdtemp(prefix="bissl-sandbox-cost-")
    try:
        make_inputs.resnet50(work)
        h5 = os.path.join(work, "r50.h5")
        subprocess.run([bissl, "convert", os.path.join(work, "r50.pth"), h5], check=True, stdout=subprocess.DEVNULL)
        warm(h5)
        size = os.path.getsize(h5)
        on = dict(os.environ)
        on.pop("BISSL_HDF5_SANDBOX", None)
        off = dict(on, BISSL_HDF5_SANDBOX="0")
        times = {k: [] for k in ("import on", "import off", "inspect on", "inspect off")}
        for i in range(TRIALS):
            for mode, env in (("on", on), ("off", off)):
                zoo = os.path.join(work, f"zoo-{mode}-{i}")
                times[f"import {mode}"].append(wall([bissl, "import", h5, "--zoo", zoo], env))
                shutil.rmtree(zoo)
                times[f"inspect {mode}"].append(wall([bissl, "inspect", h5, "--json"], env))
        print(f"checkpoint {size / 1e6:.0f} MB; CPU {cpu_model()}; load average {os.getloadavg()}")
        for what in ("import", "inspect"):
            for i, clock in ((0, "wall"), (1, "CPU")):
                a, b = (min(t[i] for t in times[f"{what} {mode}"]) for mode in ("on", "off"))
                print(f"{what} ({clock}): {a * 1000:.0f} ms with the reader process, {b * 1000:.0f} ms in process: "
                      f"{(a - b) * 1000:+.0f} ms ({(a / b - 1) * 100:+.1f}%), best of {TRIALS}")
        print(f"load average at the end {os.getloadavg()}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main(sys.argv[1])
