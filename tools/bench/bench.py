"""`make bench`: bissl's conversion and zoo figures beside the reference figures, measured in one run.

    python3 tools/bench/bench.py PATH/TO/bissl        # (tools/bench.sh, after a release build)
    python3 tools/bench/bench.py PATH/TO/bissl --only conversion,import   # some groups of rows only

Groups: `conversion` (convert, read, peak RSS), `import` (import, diff, show), `list` (list and lineage
over a 10,000-entry zoo built first, several minutes, then list of 100,000).

Targets: README.md, "Benchmarks". Not a test: it prints figures and never fails on a
missed target (it fails only when a command fails). Every input lives in a scratch folder that is removed
at the end; nothing is committed.

What is timed (wall clock, `time.perf_counter`, best of N; page cache warm: each input is read once
before the first trial):
- bissl figures are whole processes (fork/exec, Swift runtime start, the command, exit), run with
  stdout to /dev/null; the `bissl --version` row is that fixed process cost on this machine.
- Reference figures run inside this Python process (interpreter and imports already loaded).
- Peak RSS of convert, read and import is GNU time's `%M` ("Maximum resident set size" of
  `/usr/bin/time -v`) in one further run each.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_inputs  # noqa: E402

TRIALS = 5          # best of TRIALS for every timed figure but import
IMPORT_TRIALS = 3   # each import trial writes a 100 MB object into a new zoo
ZOO_ENTRIES = 10_000
BIG_ZOO_ENTRIES = 100_000
CHAIN_DEPTH = 1_000
TIME = "/usr/bin/time"


def run(argv, env=None):
    """Wall seconds of one process, stdout to /dev/null; raises with its stderr when it fails."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.read().decode(errors='replace').strip()}")
    return wall


def peak_rss(argv):
    """Peak RSS in bytes of one process as GNU time measures it (`%M`, KiB), or None without /usr/bin/time.
    (The rusage of a child forked from this Python process would count this process's own pages.)"""
    if not os.path.exists(TIME):
        return None
    with tempfile.NamedTemporaryFile(mode="r") as out:
        run([TIME, "-f", "%M", "-o", out.name] + argv)
        return int(out.read().strip().splitlines()[-1]) * 1024


def best(trials, fn):
    """Smallest of `trials` wall times of fn() (fn returns seconds)."""
    return min(fn() for _ in range(trials))


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_kernel(bissl):
    """The OpenBLAS kernel bissl's GEMMs run and how it was chosen: the `kernel:` line of `bissl doctor`.
    Not `openblas_get_corename()` of the library loaded here: on a CPU OpenBLAS does not know, the library
    picks its generic kernel and bissl reopens it with a better one (README.md, "Which OpenBLAS kernel
    runs"), so only bissl can say which kernel its products run on."""
    doctor = subprocess.run([bissl, "doctor"], capture_output=True, text=True, check=True).stdout
    for line in doctor.splitlines():
        if line.startswith("kernel:"):
            return "OpenBLAS kernel " + line.split(":", 1)[1].strip()
    return "OpenBLAS kernel unknown (`bissl doctor` printed no kernel line)"


def environment(bissl):
    import h5py
    import numpy
    import safetensors
    import torch

    version = subprocess.run([bissl, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    lines = [
        f"bissl {version.splitlines()[0] if version else '?'} ({bissl})",
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average at start {os.getloadavg()[0]:.2f}",
        "BLAS: " + blas_kernel(bissl),
        "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)")
        + " OPENBLAS_L2_SIZE=" + os.environ.get("OPENBLAS_L2_SIZE", "(unset)"),
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"safetensors {safetensors.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version})",
    ]
    return lines


class Table:
    """Rows of: what, ours, reference, ratio, target, verdict."""

    def __init__(self):
        self.rows = []

    def add(self, what, ours, reference="-", ratio="-", target="-", met=None):
        verdict = "-" if met is None else ("yes" if met else "NO")
        self.rows.append((what, ours, reference, ratio, target, verdict))

    def render(self):
        header = ("measure", "bissl", "reference", "ratio", "target", "met")
        widths = [max(len(r[i]) for r in [header] + self.rows) for i in range(len(header))]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in self.rows]
        return "\n".join(out)


def ms(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def conversion(bissl, work, table, notes):
    import h5py
    import torch
    from safetensors import safe_open
    from safetensors.numpy import load_file as st_numpy_load
    from safetensors.torch import load_file as st_torch_load

    pth = os.path.join(work, "r50.pth")
    st = os.path.join(work, "r50.safetensors")
    size = os.path.getsize(pth)
    for path in (pth, st):
        warm(path)
    notes.append(f"checkpoint: ResNet-50 state dict (width 64, 1000 classes, randomized), torch.save zip, "
                 f"{size / 1e6:.1f} MB, {len(torch.load(pth, weights_only=True))} tensors")

    startup = best(5, lambda: run([bissl, "--version"]))
    table.add("bissl --version (process start + exit)", ms(startup))

    # .pth -> HDF5
    h5 = os.path.join(work, "r50.h5")

    def ours_convert():
        if os.path.exists(h5):
            os.unlink(h5)
        return run([bissl, "convert", pth, h5])

    def ref_convert(durable=False):
        out = os.path.join(work, "ref.h5")
        start = time.perf_counter()
        sd = torch.load(pth, weights_only=True)
        with h5py.File(out, "w") as f:
            for key, tensor in sd.items():
                f.create_dataset(key, data=tensor.numpy())
        if durable:
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        wall = time.perf_counter() - start
        os.unlink(out)
        return wall

    ours = best(TRIALS, ours_convert)
    ref = best(TRIALS, ref_convert)
    durable = best(TRIALS, lambda: ref_convert(durable=True))
    table.add(f"convert .pth -> .h5 (best of {TRIALS})", ms(ours), ms(durable) + " torch.load+h5py+fsync",
              f"{ours / durable:.2f}x", "<= 1.5x", ours / durable <= 1.5)
    table.add("  same, reference without fsync", ms(ours), ms(ref) + " torch.load+h5py", f"{ours / ref:.2f}x")

    # Reading our HDF5: inspect (structure only), then every tensor into memory (IOBench)
    warm(h5)
    inspect = best(TRIALS, lambda: run([bissl, "inspect", h5, "--json"]))
    table.add(f"inspect our .h5: inspect --json (best of {TRIALS})", ms(inspect))
    iobench = os.path.join(os.path.dirname(bissl), "IOBench")
    read_zoo = os.path.join(work, "zoo-read")
    run([bissl, "import", h5, "--name", "r50", "--zoo", read_zoo])
    ours_zoo = best(TRIALS, lambda: run([iobench, "zoo", read_zoo, "r50"]))
    ours_file = best(TRIALS, lambda: run([iobench, "file", bissl, h5]))
    ref_pt = best(TRIALS, lambda: timed(lambda: st_torch_load(st, backend="pread")))
    ref_np = best(TRIALS, lambda: timed(lambda: st_numpy_load(st, backend="pread")))

    def st_mmap():
        with safe_open(st, framework="pt") as f:
            tensors = [f.get_tensor(k) for k in f.keys()]
        if sum(t.nbytes for t in tensors) < size * 0.9:
            raise RuntimeError("safe_open read less than the checkpoint's tensors")

    def h5py_read(**kwargs):
        arrays = []

        def read(_, obj):   # returns None: visititems stops at the first non-None return
            if isinstance(obj, h5py.Dataset):
                arrays.append(obj[()])

        with h5py.File(h5, "r", **kwargs) as f:
            f.visititems(read)
        if sum(a.nbytes for a in arrays if hasattr(a, "nbytes")) < size * 0.9:
            raise RuntimeError("h5py read less than the checkpoint's tensors")

    ref_mmap = best(TRIALS, lambda: timed(st_mmap))
    ref_h5 = best(TRIALS, lambda: timed(h5py_read))
    ref_core = best(TRIALS, lambda: timed(lambda: h5py_read(driver="core")))
    ours = ours_zoo
    table.add(f"read every tensor into memory: zoo entry (best of {TRIALS})", ms(ours), ms(ref_pt) + " st.torch pread",
              f"{ours / ref_pt:.2f}x", "<= 1.2x", ours / ref_pt <= 1.2)
    table.add("  same, vs safetensors.numpy.load_file", ms(ours), ms(ref_np) + " st.numpy pread", f"{ours / ref_np:.2f}x")
    table.add("  same, vs safetensors.safe_open (mmap)", ms(ours), ms(ref_mmap) + " st safe_open", f"{ours / ref_mmap:.2f}x",
              "<= 1.0x", ours / ref_mmap <= 1.0)
    table.add("  same, vs h5py reading every dataset of it", ms(ours), ms(ref_h5) + " h5py", f"{ours / ref_h5:.2f}x")
    table.add("  same, vs h5py driver='core'", ms(ours), ms(ref_core) + " h5py core", f"{ours / ref_core:.2f}x")
    table.add("  same, minus process start", ms(ours - startup), ms(ref_pt) + " st.torch pread",
              f"{(ours - startup) / ref_pt:.2f}x")
    table.add(f"read every tensor into memory: outside .h5 (best of {TRIALS})", ms(ours_file), ms(ref_pt) + " st.torch pread",
              f"{ours_file / ref_pt:.2f}x")
    notes.append("inspect row: `bissl inspect r50.h5 --json > /dev/null`: the HDF5 reader process walks the file's metadata "
                 "and reports where each tensor lies; the tensors are views of the mapped file that inspect never "
                 "touches, so no tensor bytes are read")
    notes.append("read rows: `IOBench` (Sources/IOBench, built with bissl), one whole process that reads every tensor "
                 "into memory and touches every 4 KiB page of it: `zoo` = Zoo.checkpoint of the imported entry (the "
                 "in-process read of a verified object that diff, export and eval use: its tensor index read, the file "
                 "mapped, every tensor a view of it, no libhdf5); `outside .h5` = UntrustedCheckpointFile.read through "
                 "bissl's HDF5 reader process (import, convert, inspect: tensors are views of the mapped file, "
                 "faulted in page by page); references: safetensors.torch/numpy load_file(backend='pread'), tensor "
                 "bytes read into new tensors/arrays (with copy, no mmap), on the same tensors; "
                 "safetensors.safe_open(framework='pt') with get_tensor of every name (the file memory-mapped)")
    notes.append("the h5py rows read the very file bissl wrote (every dataset, contiguous): the HDF5 library's "
                 "own reading cost, through the POSIX driver and with driver='core' (the whole file read into "
                 "memory first, datasets copied out of it)")
    notes.append("convert reference: torch.load(weights_only=True) then h5py.File.create_dataset per tensor "
                 "(contiguous, uncompressed), file written and closed, then fsync of the file; bissl convert "
                 "fsyncs the file and its folder (AtomicFile)")

    os.unlink(h5)
    for what, argv, target in (("convert", [bissl, "convert", pth, h5], 1.3),
                               ("inspect --json", [bissl, "inspect", h5, "--json"], None),
                               ("read, zoo entry (IOBench zoo)", [iobench, "zoo", read_zoo, "r50"], None),
                               ("read, outside .h5 (IOBench file)", [iobench, "file", bissl, h5], None)):
        peak = peak_rss(argv)
        if peak is None:
            table.add(f"peak RSS of {what}", f"n/a (no {TIME})")
            continue
        table.add(f"peak RSS of {what} (GNU time %M)", f"{peak / 1e6:.0f} MB", f"{size / 1e6:.0f} MB checkpoint",
                  f"{peak / size:.2f}x", f"<= {target}x" if target else "-", None if target is None else peak / size <= target)
    return size


def catalog_copies(zoo, total):
    """Adds rows to ZOO's catalog until it lists `total` entries: copies of the listed rows (entries,
    labels none, metrics, edges) under new ids, written with SQL directly. Only `list` and `lineage`
    read these rows; their objects do not exist (`bissl verify` would report them missing)."""
    import hashlib
    import sqlite3

    db = sqlite3.connect(os.path.join(zoo, "catalog.sqlite"))
    with db:
        rows = db.execute("SELECT * FROM entries").fetchall()
        columns = [d[0] for d in db.execute("SELECT * FROM entries LIMIT 1").description]
        metrics = {}
        for entry_id, name, value in db.execute("SELECT entry_id, name, value FROM metrics"):
            metrics.setdefault(entry_id, []).append((name, value))
        have = len(rows)
        marks = ",".join("?" * len(columns))
        i = 0
        while have < total:
            row = list(rows[i % len(rows)])
            new_id = hashlib.sha256(f"bench-copy-{i}".encode()).hexdigest()
            old_id, row[0] = row[0], new_id
            if "name" in columns:   # a copy holds no label (schema version 4 keeps the name in the row)
                row[columns.index("name")] = None
            db.execute(f"INSERT INTO entries ({','.join(columns)}) VALUES ({marks})", row)
            for name, value in metrics.get(old_id, []):
                db.execute("INSERT INTO metrics (entry_id, name, value) VALUES (?, ?, ?)", (new_id, name, value))
            have += 1
            i += 1
    db.close()


def zoo(bissl, work, table, notes, size):
    pth = os.path.join(work, "r50.pth")
    pth_b = os.path.join(work, "r50b.pth")
    for path in (pth, pth_b):
        warm(path)

    # import of the 100 MB .pth, each trial into a new zoo
    zoos = [os.path.join(work, f"zoo-import-{i}") for i in range(IMPORT_TRIALS + 1)]
    trial = iter(zoos)
    ours = best(IMPORT_TRIALS, lambda: run([bissl, "import", pth, "--name", "a", "--zoo", next(trial)]))
    table.add(f"import 100 MB .pth (new zoo, best of {IMPORT_TRIALS})", ms(ours), "-", "-", "< 0.4 s", ours < 0.4)
    peak = peak_rss([bissl, "import", pth, "--name", "a", "--zoo", zoos[-1]])
    if peak is not None:
        table.add("peak RSS of import (GNU time %M)", f"{peak / 1e6:.0f} MB", f"{size / 1e6:.0f} MB checkpoint",
                  f"{peak / size:.2f}x")

    # diff of two ResNet-50 entries
    z = zoos[0]
    run([bissl, "import", pth_b, "--name", "b", "--zoo", z])
    ours = best(TRIALS, lambda: run([bissl, "diff", "a", "b", "--zoo", z]))
    table.add(f"diff two ResNet-50 entries (best of {TRIALS})", ms(ours), "-", "-", "< 0.2 s", ours < 0.2)
    ours = best(TRIALS, lambda: run([bissl, "show", "a", "--zoo", z]))
    table.add(f"show a ResNet-50 entry (best of {TRIALS})", ms(ours), "-", "-")


def listing(bissl, work, table, notes):
    # list over ZOO_ENTRIES entries, one chain of CHAIN_DEPTH among them
    z = os.path.join(work, "zoo-many")
    make_inputs.tiny(work)
    base = os.path.join(work, "tiny.h5")
    run([bissl, "convert", os.path.join(work, "tiny.safetensors"), base])
    run([bissl, "import", base, "--zoo", z])   # creates the zoo (catalog, folders) the usual way
    start = time.perf_counter()
    for cid, path in make_inputs.variants(base, ZOO_ENTRIES - CHAIN_DEPTH - 1, start=1):
        make_inputs.place(z, cid, path)
    tip = None
    for tip, path in make_inputs.variants(base, CHAIN_DEPTH, start=ZOO_ENTRIES, linked=True):
        make_inputs.place(z, tip, path)
    built = time.perf_counter() - start
    reindex = run([bissl, "verify", "--reindex", "--zoo", z])
    listed = json.loads(subprocess.run([bissl, "list", "--json", "--zoo", z], capture_output=True, text=True,
                                       check=True).stdout)
    notes.append(f"zoo for list/lineage: {len(listed)} entries (1 imported, {ZOO_ENTRIES - 1} object files written "
                 f"by h5py from it in {built:.0f} s, indexed by `bissl verify --reindex` in {reindex:.0f} s)")
    if len(listed) != ZOO_ENTRIES:
        raise RuntimeError(f"expected {ZOO_ENTRIES} entries, bissl list shows {len(listed)}")
    ours = best(TRIALS, lambda: run([bissl, "list", "--zoo", z]))
    table.add(f"list, {len(listed):,} entries (best of {TRIALS})", ms(ours), "-", "-", "< 50 ms", ours < 0.05)

    lineage = json.loads(subprocess.run([bissl, "lineage", tip, "--up", "--format", "json", "--zoo", z],
                                        capture_output=True, text=True, check=True).stdout)
    depth = len(lineage.get("nodes", []))
    if depth != CHAIN_DEPTH:
        raise RuntimeError(f"lineage of the chain tip shows {depth} nodes, expected {CHAIN_DEPTH}")
    ours = best(TRIALS, lambda: run([bissl, "lineage", tip[:12], "--up", "--zoo", z]))
    table.add(f"lineage --up, {CHAIN_DEPTH:,}-deep chain, text (best of {TRIALS})", ms(ours), "-", "-", "< 100 ms",
              ours < 0.1)

    start = time.perf_counter()
    catalog_copies(z, BIG_ZOO_ENTRIES)
    notes.append(f"list of {BIG_ZOO_ENTRIES:,}: the same zoo's catalog grown by copies of its rows under new ids "
                 f"(SQL, {time.perf_counter() - start:.0f} s; no object files behind them, which list never opens)")
    ours = best(TRIALS, lambda: run([bissl, "list", "--zoo", z]))
    table.add(f"list, {BIG_ZOO_ENTRIES:,} entries (best of {TRIALS})", ms(ours), "-", "-", "< 200 ms", ours < 0.2)


GROUPS = ("conversion", "import", "list")


def main():
    bissl = os.path.abspath(sys.argv[1])
    groups = GROUPS
    if len(sys.argv) == 4 and sys.argv[2] == "--only":
        groups = tuple(sys.argv[3].split(","))
    elif len(sys.argv) != 2:
        sys.exit("usage: bench.py PATH/TO/bissl [--only " + ",".join(GROUPS) + "]")
    unknown = set(groups) - set(GROUPS)
    if unknown:
        sys.exit(f"bench.py: unknown group(s) {', '.join(sorted(unknown))}; groups: {', '.join(GROUPS)}")
    began = time.perf_counter()
    for line in environment(bissl):
        print(line)
    work = tempfile.mkdtemp(prefix="bissl-bench-")
    table, notes = Table(), []
    try:
        start = time.perf_counter()
        make_inputs.resnet50(work)
        notes.append(f"inputs written in {time.perf_counter() - start:.0f} s (scratch {work}, removed afterwards)")
        size = os.path.getsize(os.path.join(work, "r50.pth"))
        if "conversion" in groups:
            conversion(bissl, work, table, notes)
        if "import" in groups:
            zoo(bissl, work, table, notes, size)
        if "list" in groups:
            listing(bissl, work, table, notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(table, notes)
    print(f"- whole bench: {time.perf_counter() - began:.0f} s; load average at end {os.getloadavg()[0]:.2f}")


def report(table, notes):
    """The table, then the notes as a list."""
    print()
    print(table.render())
    print()
    for note in notes:
        print("- " + note)


if __name__ == "__main__":
    main()
