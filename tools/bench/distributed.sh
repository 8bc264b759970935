#!/usr/bin/env bash
# Data-parallel figures of docs/distributed.md: DistributedBench (Sources/DistributedBench/main.swift says
# what each figure times) under `mpirun -np 1` and `-np 2` on this machine, loopback/shared memory.
# Prints the load average beside (the machine may be shared), one JSON line per rank count, and a table.
# Usage: tools/bench/distributed.sh PATH/TO/bissl [--batch 16] [--size 32] [--repeats 5]
#        (DistributedBench is taken from the same build directory)
set -euo pipefail
BENCH="$(cd "$(dirname "$1")" && pwd)/DistributedBench"
shift
[ -x "$BENCH" ] || { echo "bench: $BENCH not built (swift build -c release)"; exit 1; }
command -v mpirun >/dev/null || { echo "bench: mpirun not found (make setup installs openmpi-bin)"; exit 1; }
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=()
for np in 1 2; do
  line=$(mpirun --oversubscribe -np "$np" --bind-to none --mca btl self,vader,tcp --mca btl_tcp_if_include lo \
           --mca oob_tcp_if_include lo "$BENCH" "$@")
  echo "$line"
  out+=("$line")
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${out[@]}" > "${TMPDIR:-/tmp}/bissl-distributed-bench.jsonl"
python3 - "${TMPDIR:-/tmp}/bissl-distributed-bench.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r = rows[0]
print(f"\nResNet-50 gradient: {r['elements']:,} float32 ({r['bytes'] / 1e6:.1f} MB); CPU {r['cpu']}; OpenBLAS kernel {r['blas_kernel']} ({r['blas_kernel_choice']})")
print(f"global batch {r['batch']} images of {r['size']}x{r['size']}")
print("ranks  shard  all-reduce s  compute s  reduce s  update s  step s  comm share")
for r in rows:
    step = r["compute_s"] + r["reduce_s"] + r["update_s"]
    print(f"{r['ranks']:>5}  {r['shard']:>5}  {r['allreduce_s']:>12.4f}  {r['compute_s']:>9.3f}  {r['reduce_s']:>8.4f}  {r['update_s']:>8.4f}  {step:>6.3f}  {r['reduce_s'] / step:>9.1%}")
# Overlap (Sources/DistributedBench/main.swift, overlap_s): what running the all-reduce beside the backward
# pass hides at most, against running them one after the other.
for r in rows:
    if r["ranks"] < 2: continue
    serial = r["backward_s"] + r["allreduce_s"]
    hidden = serial - r["overlap_s"]
    print(f"\noverlap, {r['ranks']} ranks: backward {r['backward_s']:.3f} s + all-reduce {r['allreduce_s']:.4f} s = {serial:.3f} s one after the other; "
          f"concurrently {r['overlap_s']:.3f} s: hides {hidden * 1e3:.0f} ms ({hidden / r['allreduce_s']:.0%} of the all-reduce, "
          f"{hidden / (r['compute_s'] + r['reduce_s'] + r['update_s']):.1%} of the step)")

# Scaling model (docs/distributed.md, "Scaling model for N nodes"): N nodes like this one, each computing
# B/N images at the measured per-image cost, plus the measured packing overhead and the update, plus a
# ring all-reduce of the gradient: 2(N-1)/N * bytes / bandwidth + 2(N-1) * alpha per 25 MiB bucket.
one = next(r for r in rows if r["ranks"] == 1)
two = next((r for r in rows if r["ranks"] == 2), None)
per_image = one["compute_s"] / one["batch"]
pack = max(0.0, two["reduce_s"] - two["allreduce_s"]) if two else 0.0
update = one["update_s"]
size = one["bytes"]
buckets = -(-one["elements"] // (25 * 1024 * 1024 // 4))
alpha = 50e-6
print(f"\nscaling model: {per_image * 1e3:.1f} ms of compute per image (1 rank), packing {pack * 1e3:.0f} ms, update {update * 1e3:.0f} ms,")
print(f"{size / 1e6:.1f} MB in {buckets} buckets, latency alpha = {alpha * 1e6:.0f} us per message; step seconds (efficiency)")
for batch in (256, 1024):
    t1 = batch * per_image + update
    print(f"global batch {batch} at {one['size']}x{one['size']}: 1 node {t1:.1f} s")
    print("    N  " + "".join(f"{g:>20}" for g in ("10 Gbit/s", "25 Gbit/s", "100 Gbit/s")))
    for n in (2, 4, 8, 16, 32, 64, 128):
        cells = []
        for gbit in (10, 25, 100):
            ring = 2 * (n - 1) / n * size / (gbit * 1e9 / 8) + buckets * 2 * (n - 1) * alpha
            t = batch / n * per_image + pack + ring + update
            cells.append(f"{t:8.2f} ({t1 / t / n:4.0%})")
        print(f"{n:>5}  " + "".join(f"{c:>20}" for c in cells))
PY
rm -f "${TMPDIR:-/tmp}/bissl-distributed-bench.jsonl"
