"""Inputs of `make bench` (tools/bench.sh), written to a scratch folder, never committed.

    python3 tools/bench/make_inputs.py resnet50 DIR      # DIR/r50.pth (~100 MB), DIR/r50b.pth, DIR/r50.safetensors
    python3 tools/bench/make_inputs.py tiny DIR          # DIR/tiny.safetensors, a ResNet-18 of width 1
    python3 tools/bench/make_inputs.py objects BASE.h5 ZOO N START [--chain]   # N entries as ZOO/objects/ files

`resnet50`: torchvision-named ResNet-50 (tools/reference_resnet.py, width 64, ImageNet stem, 1000 classes),
randomized() with seeds 0 and 1, saved by torch.save (zip container); the safetensors copy holds the same
tensors (safetensors.torch.save_file), for the loading reference.

`tiny`: ResNet-18 width 1, small stem, 10 classes (~20 KB of float32), randomized(seed=0), saved by
safetensors.numpy.save_file: the base of the many small zoo entries.

`objects`: copies of a bissl checkpoint BASE.h5 (written by `bissl convert`), file i with
fc.bias[0] = START + i, provenance stage `finetune` and, with --chain, parents = [file i-1's content id,
relation `finetuned-from`] (file 0 has none); the root attribute content_id is computed per
schemas/checkpoint-v1.md by tools/fixtures/h5_content_id.py. Each file is written straight to
`ZOO/objects/<2 hex>/<62 hex>.h5`, the object path of its content id; `bissl verify --reindex` then lists
them (it recomputes every content id and skips a file whose id does not match its name). Prints the id of
the last file (the tip of the chain with --chain).
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))


def resnet50(out):
    import torch
    from safetensors.torch import save_file
    from reference_resnet import ResNet, randomized

    os.makedirs(out, exist_ok=True)
    sd = randomized(ResNet(50), seed=0).state_dict()
    torch.save(sd, os.path.join(out, "r50.pth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "r50.safetensors"))
    torch.save(randomized(ResNet(50), seed=1).state_dict(), os.path.join(out, "r50b.pth"))


def tiny(out):
    from safetensors.numpy import save_file
    from reference_resnet import ResNet, randomized

    os.makedirs(out, exist_ok=True)
    model = randomized(ResNet(18, width=1, stem="small", num_classes=10))
    save_file({k: v.numpy() for k, v in model.state_dict().items()}, os.path.join(out, "tiny.safetensors"))


def variants(base, n, start=0, linked=False):
    """Yields (content id, path of a temporary copy of BASE with fc.bias[0] = start + i) for i < n; with
    `linked`, copy i names copy i-1 as its parent. The caller moves or keeps each file before the next.
    Ids are computed by h5_content_id.content_id from BASE's tensors with the one value replaced."""
    import tempfile
    import h5py
    import numpy as np
    from h5_content_id import content_id, read_h5

    tensors, architecture = read_h5(base)
    at = next(i for i, t in enumerate(tensors) if t[:2] == ("classifier", "fc.bias"))
    bias = np.frombuffer(tensors[at][4], dtype="<f4").copy()
    with h5py.File(base, "r") as f:
        provenance = json.loads(f["provenance"][()])
    provenance.pop("source", None)
    scratch = tempfile.mkdtemp(prefix="bissl-bench-")
    parent = None
    for i in range(n):
        path = os.path.join(scratch, "entry.h5")
        shutil.copyfile(base, path)
        bias[0] = np.float32(start + i)
        tensors[at] = tensors[at][:4] + (bias.tobytes(),)
        cid = content_id(tensors, architecture)
        with h5py.File(path, "r+") as f:
            f["tensors"]["classifier"]["fc.bias"][...] = bias
            p = dict(provenance, stage="finetune", method="sgd",
                     parents=[{"id": parent, "relation": "finetuned-from"}] if linked and parent else [])
            del f["provenance"]
            f.create_dataset("provenance", data=json.dumps(p), dtype=h5py.string_dtype("utf-8"))
            f.attrs["content_id"] = cid
        drop_tensor_index(path)
        parent = cid
        yield cid, path
    shutil.rmtree(scratch, ignore_errors=True)


def drop_tensor_index(path):
    """Blanks the tag of bissl's tensor index (schemas/checkpoint-v1.md, "Tensor index") in the HDF5 user
    block of `path`: h5py keeps the user block when it edits a file, but the edits made the index stale,
    and a zoo refuses an object whose index disagrees with its HDF5 metadata. Without the tag, bissl
    reads the object through HDF5 alone."""
    tag = b"bissl-tensor-index/v1"
    head = len(tag).to_bytes(8, "little") + tag
    with open(path, "r+b") as f:
        if f.read(len(head)) == head:
            f.seek(0)
            f.write(b"\0" * len(head))


def place(zoo, cid, path):
    """Moves the file at `path` to the object path of content id `cid` in the zoo folder `zoo`."""
    folder = os.path.join(zoo, "objects", cid[:2])
    os.makedirs(folder, exist_ok=True)
    os.replace(path, os.path.join(folder, cid[2:] + ".h5"))


def objects(base, zoo, n, start, linked):
    cid = None
    for cid, path in variants(base, n, start=start, linked=linked):
        place(zoo, cid, path)
    print(cid)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "resnet50":
        resnet50(sys.argv[2])
    elif what == "tiny":
        tiny(sys.argv[2])
    elif what == "objects":
        objects(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), "--chain" in sys.argv[6:])
    else:
        sys.exit(f"unknown input kind {what}")
