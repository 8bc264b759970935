"""Model cards (`bissl card`) and Hub-style folders (`bissl export REF --to hub DIR`, `bissl import DIR`)
against the real readers: huggingface_hub parses the card's YAML front matter (no network use), the
folder's model.safetensors loads into the plain-torch ResNet (tools/reference_resnet.py) with
strict=True, config.json follows timm's keys, and a folder imported and exported again is the same
folder byte for byte.

The lineage is real: a torch ResNet imported, then fine-tuned for a few steps on the digits data set
(data/digits), so the card states a recorded dataset fingerprint, hyperparameters and a top-1."""
import json
import pathlib
import sys

import pytest
import torch
from safetensors.torch import load_file

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import ModelCard  # noqa: E402
from huggingface_hub.repocard import metadata_load  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from reference_resnet import ResNet, randomized  # noqa: E402

DIGITS = f"h5:{ROOT / 'data' / 'digits' / 'digits.h5'}"


@pytest.fixture(scope="module")
def lineage(bissl, tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    zoo = root / "zoo"
    model = randomized(ResNet(18, width=4, stem="small", num_classes=10), seed=21)
    torch.save(model.state_dict(), root / "base.pth")
    base = json.loads(bissl("import", root / "base.pth", "--zoo", zoo, "--name", "base", "--json").stdout)["id"]
    bissl("finetune", "base", "--data", DIGITS, "--steps", "4", "--batch-size", "16", "--image-size", "8",
          "--name", "digits-ft", "--zoo", zoo)
    ft = json.loads(bissl("show", "digits-ft", "--zoo", zoo, "--json").stdout)
    return root, zoo, base, ft


def test_card_front_matter_parses_and_states_the_recorded_lineage(bissl, lineage):
    root, zoo, base, ft = lineage
    out = root / "README.md"
    bissl("card", "digits-ft", "-o", out, "--zoo", zoo)
    card = ModelCard.load(out)
    data = card.data.to_dict()
    assert data["library_name"] == "bissl"
    assert data["base_model"] == base
    assert data["base_model_relation"] == "finetune"
    assert data["pipeline_tag"] == "image-classification"
    assert data["datasets"] == [d["uri"] for d in ft["provenance"]["datasets"]]
    assert "license" not in data, "no stage records a license"
    assert metadata_load(out) == data, "huggingface_hub keeps every key as written"
    results = card.data.eval_results
    recorded = ft["provenance"]["metrics"]
    assert {r.metric_value for r in results} == {recorded["val_top1"], recorded["best_val_top1"]}
    assert all(r.task_type == "image-classification" and r.metric_type == "accuracy" for r in results)
    body = card.text
    for stage_id in [base, ft["id"]]:
        assert f"`{stage_id}`" in body
    provenance = ft["provenance"]
    for d in provenance["datasets"]:
        assert d["fingerprint"] in body
    for key in provenance["hyperparameters"]:
        assert f"`{key}`" in body
    assert "bissl finetune base --data" in body
    # stdout and -o give the same card
    assert bissl("card", "digits-ft", "--zoo", zoo).stdout == out.read_text()


def test_hub_folder_loads_strictly_in_torch_and_round_trips(bissl, lineage):
    root, zoo, base, ft = lineage
    folder = root / "hub"
    printed = bissl("export", "digits-ft", "--to", "hub", folder, "--zoo", zoo).stdout
    assert printed.startswith(f"wrote {folder}/")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet18-w4-small" and config["num_classes"] == 10
    assert config["num_features"] == 32
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 8, 8] and cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.875
    assert cfg["mean"] == [0.485, 0.456, 0.406] and cfg["std"] == [0.229, 0.224, 0.225]

    model = ResNet(18, width=4, stem="small", num_classes=10)
    state = load_file(folder / "model.safetensors")
    model.load_state_dict(state, strict=True)
    exported_pth = root / "ft.pth"
    bissl("export", "digits-ft", "-o", exported_pth, "--zoo", zoo)
    reference = torch.load(exported_pth, weights_only=True)
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    ModelCard.load(folder / "README.md")

    # Into a fresh zoo and out again: the same folder, byte for byte.
    other = root / "zoo2"
    imported = json.loads(bissl("import", folder, "--zoo", other, "--json").stdout)
    assert imported["id"] == ft["id"], "same tensors and architecture: same content id"
    again = root / "hub2"
    bissl("export", imported["id"], "--to", "hub", again, "--zoo", other)
    for name in ["model.safetensors", "config.json", "README.md"]:
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name
    shown = json.loads(bissl("show", imported["id"], "--zoo", other, "--json").stdout)
    source = shown["provenance"]["source"]
    assert source["container"] == "hub folder"
    assert source["metadata"]["hub.config.json"] == (folder / "config.json").read_text()
    assert source["metadata"]["hub.README.md"] == (folder / "README.md").read_text()


def test_hub_folder_of_an_imported_entry_states_only_what_is_recorded(bissl, lineage, tmp_path):
    # The imported base records no preprocessing: config.json leaves it out and says so; the folder
    # still loads strictly in torch and imports back as the same entry.
    root, zoo, base, _ = lineage
    folder = tmp_path / "base-hub"
    printed = bissl("export", "base", "--to", "hub", folder, "--zoo", zoo).stdout
    assert "note: the entry records no preprocessing (imported)" in printed
    config = json.loads((folder / "config.json").read_text())
    cfg = config["pretrained_cfg"]
    assert not {"mean", "std", "crop_pct", "crop_mode", "interpolation"} & cfg.keys()
    assert cfg["input_size"] == [3, 224, 224] and config["bissl"]["input_size"].startswith("assumed:")
    assert config["bissl"]["preprocessing"].startswith("not recorded:")
    # The card says the same in words, and what config.json assumes.
    card = ModelCard.load(folder / "README.md").text
    assert "## Preprocessing\n\nNot recorded: the entry was imported" in card
    assert "The hub folder's `input_size` [3, 224, 224] is an assumption (torchvision's convention), not a record" in card
    model = ResNet(18, width=4, stem="small", num_classes=10)
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    imported = json.loads(bissl("import", folder, "--zoo", tmp_path / "z", "--json").stdout)
    assert imported["id"] == base


def test_hub_refusals(bissl, lineage, tmp_path):
    root, zoo, _, _ = lineage
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    proc = bissl("export", "digits-ft", "--to", "hub", taken, "--zoo", zoo, check=False)
    assert proc.returncode != 0 and proc.stderr.strip() == f"error: {taken} exists and is not an empty folder; pick a new folder"
    assert sorted(p.name for p in taken.iterdir()) == ["x"]
    proc = bissl("convert", root / "base.pth", tmp_path / "h", "--to", "hub", check=False)
    assert proc.returncode != 0 and "bissl export REF --to hub DIR" in proc.stderr
    bad = tmp_path / "bad"
    bissl("export", "digits-ft", "--to", "hub", bad, "--zoo", zoo)
    config = json.loads((bad / "config.json").read_text())
    config["num_classes"] = 3
    (bad / "config.json").write_text(json.dumps(config))
    proc = bissl("import", bad, "--zoo", tmp_path / "z", check=False)
    assert proc.returncode != 0 and proc.stderr.strip() == "error: config.json says num_classes 3, the weights have 10"
    assert not (tmp_path / "z").exists()
