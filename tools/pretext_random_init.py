"""A randomly initialised ResNet backbone as a .pth file, for the "random initialisation" baseline of
docs/pretraining.md (import it with `bissl import FILE --name NAME`, then `bissl probe NAME --knn 20`).

The initialisation follows the same rules as the engine's `ResNet.initialize` (what `bissl pretrain`
starts from): convolutions Kaiming-normal with fan_out and ReLU gain, BN weight 1 and bias 0, running
mean 0 and variance 1, and the last BN of every block zero-initialised (timm's `zero_init_last`, the reference implementation's
backbone). The values come from torch's generator, so they differ from the engine's for the same seed;
the distribution is the same.

Usage: python3 tools/pretext_random_init.py OUT.pth [--depth 18] [--width 16] [--stem small] [--seed 0]
"""
import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_resnet import ResNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--stem", default="small", choices=["small", "imagenet"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = ResNet(a.depth, width=a.width, stem=a.stem, num_classes=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, m in model.named_modules():
            last = "bn3" if a.depth >= 50 else "bn2"
            if name.endswith(last) and name.startswith("layer"):
                nn.init.zeros_(m.weight)
    torch.save(model.state_dict(), a.out)
    print(f"{a.out}: ResNet-{a.depth} width {a.width} stem {a.stem}, seed {a.seed}")


if __name__ == "__main__":
    main()
