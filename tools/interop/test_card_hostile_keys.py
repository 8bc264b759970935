"""Model cards of an entry imported from a .pth whose tensor keys carry a prefix with ESC and a line
feed (`enc\\x1b[2J\\n.`), as a hostile or damaged file may: `bissl card` (printed and -o) and the
README.md of `bissl export --to hub` hold no control character but their own line feeds, every
table row keeps its cells, no recorded text starts a Markdown line, and huggingface_hub still
parses the YAML front matter."""
import re

import pytest
import torch

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import ModelCard  # noqa: E402

import pathlib  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
from reference_resnet import ResNet, randomized  # noqa: E402

PREFIX = "enc\x1b[2J\n# injected|."
# C0 but line feed, DEL, C1, U+2028 and U+2029.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def check_card(text):
    assert not CONTROL.search(text), repr(CONTROL.search(text))
    lines = text.split("\n")
    assert not any(line.startswith("# injected") for line in lines), "a key's line feed started a Markdown line"
    # Each row of a table has its header's cell separators (`|` not escaped as `\|`).
    header = None
    for line in lines:
        if not line.startswith("|"):
            header = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        if header is None:
            header = cells
        else:
            assert cells == header, line
    assert "enc\\u{1B}[2J\\n# injected|." in text, "the prefix is shown with its escapes"


def test_card_and_hub_readme_of_hostile_keys(bissl, tmp_path):
    model = randomized(ResNet(18, width=4, stem="small", num_classes=10), seed=5)
    torch.save({PREFIX + k: v for k, v in model.state_dict().items()}, tmp_path / "hostile.pth")
    zoo = tmp_path / "zoo"
    bissl("import", tmp_path / "hostile.pth", "--zoo", zoo, "--name", "hostile")
    printed = bissl("card", "hostile", "--zoo", zoo).stdout
    check_card(printed)
    out = tmp_path / "README.md"
    bissl("card", "hostile", "-o", out, "--zoo", zoo)
    assert out.read_text() == printed
    folder = tmp_path / "hub"
    bissl("export", "hostile", "--to", "hub", folder, "--zoo", zoo)
    readme = (folder / "README.md").read_bytes().decode("utf-8")
    check_card(readme)
    for path in [out, folder / "README.md"]:
        assert ModelCard.load(path).data.to_dict()["library_name"] == "bissl"


def test_a_backtick_in_a_source_file_name_stays_in_its_code_span(bissl, tmp_path):
    """A backtick in a recorded field ended its Markdown code span early: the span's delimiter is
    one backtick longer than the longest run inside (CommonMark, "Code spans")."""
    model = randomized(ResNet(18, width=4, stem="small", num_classes=10), seed=6)
    name = "r`18 ``x``.pth"
    torch.save(model.state_dict(), tmp_path / name)
    zoo = tmp_path / "zoo"
    bissl("import", tmp_path / name, "--zoo", zoo, "--name", "ticks")
    printed = bissl("card", "ticks", "--zoo", zoo).stdout
    assert "- source file: ```r`18 ``x``.pth``` (" in printed, printed
    folder = tmp_path / "hub"
    bissl("export", "ticks", "--to", "hub", folder, "--zoo", zoo)
    readme = (folder / "README.md").read_text()
    assert "- source file: ```r`18 ``x``.pth``` (" in readme
    assert ModelCard.load(folder / "README.md").data.to_dict()["library_name"] == "bissl"
