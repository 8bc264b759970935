"""Remote benchmark of `make bench` (tools/bench.sh): bissl push/pull of a ~100 MB ResNet-50 entry against a
local SeaweedFS (`weed mini` on 127.0.0.1, started and killed here) beside the issue's two references moving the
same object file in the same run, and `bissl list --remote` of 1,000 entries.

    python3 tools/bench/remote.py PATH/TO/bissl [--trials N]

The two references, in alternating order with bissl within each trial:
- `aws s3 cp` (AWS CLI v1, the `aws` script of this Python; default s3 settings: 8 MB parts, 10 concurrent
  requests; `--no-progress`): a command, timed as a whole process exactly as `bissl` is (`bench.run`:
  fork/exec, interpreter start and imports, the transfer, exit). This is the command-to-command comparison.
- boto3's upload_file/download_file (boto3's default TransferConfig: 8 MB parts, 10 threads), called INSIDE
  this Python process with a client made beforehand: the transfer alone, with no process start, no imports
  and no request before the first byte. No user runs it as a command; it is the floor a transfer can reach.

What each figure times (wall clock, best of TRIALS; the medians are printed in the notes):
- push: `bissl push r50 --no-ancestors` into a fresh key prefix: SHA-256 of the object, conditional
  multipart upload, manifest, ref. References: the object file uploaded to a fresh key.
- pull: `bissl pull r50` into a new zoo: the remote's marker, ref and manifest, ranged parallel download
  hashed once (the content id through the object's tensor index, and the SHA-256 of its other bytes) and
  flushed to disk as it arrives, reading the file in the HDF5 reader process, placing the entry in the
  catalog. References: the object downloaded to a file, and boto3's download_file followed by an fsync of the
  file (bissl's object is on disk before it is listed).
- list --remote: 1,000 tiny entries (a 1,000-deep chain pushed by one `bissl push TIP`, which also files
  their manifests in the remote's index), text output.
"""
import datetime
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import statistics
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import make_inputs  # noqa: E402

TRIALS = 5
ENTRIES = 1000
KEY, SECRET = "bissl-bench", "bissl-bench-secret"


def ephemeral_port_start(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_pair(taken, ephemeral_start=None):
    """A port p such that p and p + 10000 (SeaweedFS's gRPC port) are free on 127.0.0.1 now, both below the
    kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default): a port in that
    range that is free now can be taken a moment later as the local end of an outgoing connection (SeaweedFS's
    services connect to each other while it starts: "s3 failed to listen on grpc port ...: address already in
    use"). The Swift tests choose theirs the same way (Tests/ZooTests/SeaweedServer.swift)."""
    start = ephemeral_port_start() if ephemeral_start is None else ephemeral_start
    upper = min(start, 65536) - 10000
    if upper <= 11000:
        raise RuntimeError(f"no port range below the ephemeral ports ({start}) for SeaweedFS")
    for _ in range(200):
        p = random.randrange(10000, upper)
        if p in taken or p + 10000 in taken:
            continue
        ok = True
        for q in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p
    raise RuntimeError("no free port pair found for SeaweedFS")


def aws_binary():
    """The AWS CLI of this Python (its `aws` script; not a pyenv shim, whose own start would be timed too)."""
    path = os.path.join(sysconfig.get_path("scripts"), "aws")
    return path if os.access(path, os.X_OK) else shutil.which("aws")


def median(values):
    return statistics.median(values)


def weed_binary():
    path = os.path.join(sysconfig.get_path("scripts"), "weed")
    return path if os.access(path, os.X_OK) else shutil.which("weed")


def start_weed(work):
    ports = {}
    for name in ("master", "volume", "filer", "s3", "admin"):
        ports[name] = free_port_pair(set(ports.values()))
    data = os.path.join(work, "weed")
    os.makedirs(data)
    config = os.path.join(work, "s3.json")
    with open(config, "w") as f:
        json.dump({"identities": [{"name": KEY, "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    log = open(os.path.join(work, "weed.log"), "w")
    proc = subprocess.Popen([weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                             f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
                             f"-filer.port={ports['filer']}", f"-s3.port={ports['s3']}", f"-admin.port={ports['admin']}",
                             "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                             f"-s3.config={config}"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", ports["s3"]), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("SeaweedFS did not start")
    return proc, endpoint


def create_bucket(endpoint, bucket, region="us-east-1", timeout=60):
    """Creates `bucket` on the server at `endpoint` with an S3 CreateBucket request (PUT /BUCKET, signed with
    AWS Signature Version 4 as the AWS S3 API reference specifies, credentials KEY/SECRET), retried until the
    server answers 200: right after start, `weed mini`'s filer and volume server fail requests for a while
    (Tests/ZooTests/SeaweedServer.swift waits the same way). No boto3 needed."""
    host = urllib.parse.urlsplit(endpoint).netloc
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(b"").hexdigest()
        headers = f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n"
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = f"PUT\n/{bucket}\n\n{headers}\n{signed}\n{payload}"
        scope = f"{stamp[:8]}/{region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = ("AWS4" + SECRET).encode()
        for part in (stamp[:8], region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", data=b"", headers={
            "x-amz-date": stamp, "x-amz-content-sha256": payload,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.3)
    raise RuntimeError(f"cannot create bucket {bucket} at {endpoint}: {last}")


def main():
    bissl = os.path.abspath(sys.argv[1])
    trials = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else TRIALS
    import boto3
    from boto3.s3.transfer import TransferConfig

    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET)
    aws = aws_binary()
    if aws is None:
        raise RuntimeError("the AWS CLI (`aws`, pip package awscli) is not installed for this Python")
    aws_version = subprocess.run([aws, "--version"], capture_output=True, text=True, env=env).stdout.strip()
    print(f"bissl {bissl}; boto3 {boto3.__version__}; {aws_version} ({aws}); "
          f"SeaweedFS: {subprocess.run([weed_binary(), 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"CPU: {bench.cpu_model()}, {os.cpu_count()} logical cores; load average at start {os.getloadavg()[0]:.2f}")
    work = tempfile.mkdtemp(prefix="bissl-bench-remote-")
    weed, endpoint = start_weed(work)
    table, notes = bench.Table(), []

    def cli(*args, zoo):
        return bench.run([bissl, *args, "--zoo", zoo], env=env)

    def aws_cp(source, target):
        return bench.run([aws, "s3", "cp", source, target, "--endpoint-url", endpoint, "--no-progress"], env=env)

    def rows(what, ours, refs):
        """One table row per reference: (label, times, target) with target None for no target."""
        for label, times, target in refs:
            ratio = min(ours) / min(times)
            table.add(what if label == refs[0][0] else f"  the same, against {label.split(' (')[0]}", bench.ms(min(ours)),
                      f"{bench.ms(min(times))} {label}", f"{ratio:.2f}x", "<= 1.2x" if target else "-",
                      ratio <= 1.2 if target else None)
        notes.append(f"{what.split(' (')[0]}, medians of {len(ours)}: bissl {bench.ms(median(ours))}; "
                     + "; ".join(f"{label} {bench.ms(median(times))} ({median(ours) / median(times):.2f}x)" for label, times, _ in refs))

    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        make_inputs.resnet50(work)
        zoo = os.path.join(work, "zoo")
        cli("import", os.path.join(work, "r50.pth"), "--name", "r50", zoo=zoo)
        obj = next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(zoo, "objects")) for f in fs)
        size = os.path.getsize(obj)

        # Each trial: bissl, the command reference, the in-process reference, in turn.
        push, cmd_push, ref_push = [], [], []
        for i in range(trials):
            url = f"s3://bench/push-{i}"
            cli("remote", "add", f"p{i}", url, "--endpoint", endpoint, zoo=zoo)
            push.append(cli("push", "r50", "--remote", f"p{i}", "--no-ancestors", zoo=zoo))
            cmd_push.append(aws_cp(obj, f"s3://bench/aws/{i}.h5"))
            ref_push.append(bench.timed(lambda: s3.upload_file(obj, "bench", f"boto3/{i}.h5", Config=TransferConfig())))
        rows(f"push {size / 1e6:.0f} MB ResNet-50 entry (best of {trials})", push, [
            ("`aws s3 cp` (a process, as bissl)", cmd_push, True),
            ("boto3 upload_file (in-process: the transfer alone)", ref_push, True)])

        def download_and_fsync(target):
            s3.download_file("bench", "boto3/0.h5", target, Config=TransferConfig())
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        pull, cmd_pull, ref_pull, ref_pull_sync = [], [], [], []
        for i in range(trials):
            fresh = os.path.join(work, f"pulled-{i}")
            cli("remote", "add", "p0", "s3://bench/push-0", "--endpoint", endpoint, zoo=fresh)
            pull.append(cli("pull", "r50", zoo=fresh))
            target = os.path.join(work, f"ref-{i}.h5")
            cmd_pull.append(aws_cp("s3://bench/boto3/0.h5", target))
            os.unlink(target)
            ref_pull.append(bench.timed(lambda: s3.download_file("bench", "boto3/0.h5", target, Config=TransferConfig())))
            os.unlink(target)
            ref_pull_sync.append(bench.timed(lambda: download_and_fsync(target)))
            shutil.rmtree(fresh)
            os.unlink(target)
        rows(f"pull {size / 1e6:.0f} MB ResNet-50 entry into a new zoo (best of {trials})", pull, [
            ("`aws s3 cp` (a process, as bissl)", cmd_pull, True),
            ("boto3 download_file (in-process: the transfer alone)", ref_pull, True),
            ("boto3 download_file + fsync (in-process)", ref_pull_sync, False)])
        notes.append("bissl and `aws s3 cp` are timed as whole processes (start, imports, requests, transfer, exit); "
                     "boto3 runs inside this Python process with its client made beforehand, so its rows are the "
                     "transfer alone, a floor no command reaches")
        notes.append("bissl pull also hashes the object (its content id through its tensor index, the SHA-256 of "
                     "its other bytes), reads it in the HDF5 reader process, flushes it to disk and lists the entry; "
                     "`aws s3 cp` and boto3 download_file only write the file")

        many = os.path.join(work, "zoo-many")
        make_inputs.tiny(work)
        base = os.path.join(work, "tiny.h5")
        bench.run([bissl, "convert", os.path.join(work, "tiny.safetensors"), base], env=env)
        cli("import", base, zoo=many)
        tip = None
        for tip, path in make_inputs.variants(base, ENTRIES, start=1, linked=True):
            make_inputs.place(many, tip, path)
        cli("verify", "--reindex", zoo=many)
        cli("remote", "add", "many", "s3://bench/many", "--endpoint", endpoint, zoo=many)
        pushed = cli("push", tip, "--remote", "many", zoo=many)
        notes.append(f"{ENTRIES} chained entries pushed by one `bissl push TIP` in {pushed:.1f} s")
        out = subprocess.run([bissl, "list", "--remote", "many", "--json", "--zoo", many], env=env, capture_output=True,
                             text=True, check=True).stdout
        count = len(json.loads(out))
        ours = bench.best(trials, lambda: cli("list", "--remote", "many", zoo=many))
        table.add(f"list --remote, {count:,} entries (best of {trials})", bench.ms(ours), "-", "-", "< 1 s", ours < 1)
    finally:
        weed.kill()
        weed.wait()
        shutil.rmtree(work, ignore_errors=True)
    bench.report(table, notes)
    print(f"- load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
