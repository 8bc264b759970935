"""A `.h5` that names data outside itself is refused, with one error line naming the object, before
anything of it is read (Sources/HDF5/Containment.swift): external links (h5py.ExternalLink, to a
contiguous or a chunked dataset), soft links, external storage and virtual datasets; in a checkpoint
(`import`, `convert`, `inspect`) and in an `h5:` dataset (`data info`)."""
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = "tensors/backbone/conv1.weight"


@pytest.fixture(scope="module")
def exported(bissl, tmp_path_factory):
    """A bissl .h5 converted from the committed torch fixture, and a secret file beside it."""
    d = tmp_path_factory.mktemp("contain")
    bissl("convert", REPO / "Tests/Fixtures/pth/resnet18_w2.pth", d / "r18.h5")
    with h5py.File(d / "secret.h5", "w") as f:
        f.create_dataset("w", data=np.full((2, 3, 3, 3), 42, np.float32))
        f.create_dataset("wc", data=np.full((2, 3, 3, 3), 43, np.float32), chunks=(1, 3, 3, 3))
    (d / "secret.bin").write_bytes(np.full(54, 44, np.float32).tobytes())
    return d


def replace(group, name, d, how):
    """Replaces group[name] (a (2, 3, 3, 3) float32) by something that reads outside the file."""
    del group[name]
    if how == "external":
        group[name] = h5py.ExternalLink(str(d / "secret.h5"), "/w")
    elif how == "external-chunked":
        group[name] = h5py.ExternalLink(str(d / "secret.h5"), "/wc")
    elif how == "soft":
        group[name] = h5py.SoftLink("/elsewhere")
        group.file.create_dataset("elsewhere", data=np.zeros((2, 3, 3, 3), np.float32))
    elif how == "external-storage":
        group.create_dataset(name, shape=(2, 3, 3, 3), dtype="<f4", external=[(str(d / "secret.bin"), 0, 216)])
    elif how == "virtual":
        layout = h5py.VirtualLayout(shape=(2, 3, 3, 3), dtype="<f4")
        layout[...] = h5py.VirtualSource(str(d / "secret.h5"), "w", shape=(2, 3, 3, 3))
        group.create_virtual_dataset(name, layout)


HOW = {"external": "is an external link", "external-chunked": "is an external link", "soft": "is a soft link",
       "external-storage": "keeps its elements in external files", "virtual": "is a virtual dataset"}


def one_error(proc, words):
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert words in proc.stderr and "conv1.weight" in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", list(HOW))
def test_checkpoint_reaching_outside_is_refused(bissl, exported, tmp_path, how):
    linked = tmp_path / "linked.h5"
    linked.write_bytes((exported / "r18.h5").read_bytes())
    with h5py.File(linked, "a") as f:
        del f.attrs["content_id"]
        replace(f["tensors/backbone"], "conv1.weight", exported, how)
    one_error(bissl("import", linked, "--zoo", tmp_path / "zoo", "--name", "leak", check=False), HOW[how])
    assert not (tmp_path / "zoo" / "objects").exists() or not any((tmp_path / "zoo" / "objects").rglob("*.h5"))
    one_error(bissl("convert", linked, tmp_path / "out.safetensors", check=False), HOW[how])
    assert not (tmp_path / "out.safetensors").exists()
    one_error(bissl("inspect", linked, check=False), HOW[how])


@pytest.mark.parametrize("how", ["external", "external-storage", "virtual"])
def test_h5_dataset_reaching_outside_is_refused(bissl, tmp_path, how):
    with h5py.File(tmp_path / "secret.h5", "w") as f:
        f.create_dataset("w", data=np.zeros((4, 8, 8), np.uint8))
    path = tmp_path / "digits.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=np.arange(4, dtype=np.int64))
        if how == "external":
            f["images"] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/w")
        elif how == "external-storage":
            (tmp_path / "secret.bin").write_bytes(bytes(4 * 8 * 8))
            f.create_dataset("images", shape=(4, 8, 8), dtype="u1", external=[(str(tmp_path / "secret.bin"), 0, 4 * 8 * 8)])
        else:
            layout = h5py.VirtualLayout(shape=(4, 8, 8), dtype="u1")
            layout[...] = h5py.VirtualSource(str(tmp_path / "secret.h5"), "w", shape=(4, 8, 8))
            f.create_virtual_dataset("images", layout)
    proc = bissl("data", "info", f"h5:{path}", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    # Every h5: error starts with the URI, the link errors (found when the file is opened) and the
    # storage errors (found when the dataset is opened) alike.
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: h5:{path}: "), proc.stderr
    assert "/images" in proc.stderr and HOW[how] in proc.stderr, proc.stderr
