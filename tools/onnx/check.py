"""Checks an ONNX model bissl exported and runs it, as the README's tour shows.

    python3 tools/onnx/check.py MODEL.onnx X.npy

Runs onnx.checker.check_model(full_check=True) (shape inference included; raises on a violation), then
prints the opset, the inputs and outputs with their dimensions (names for dynamic ones), the metadata
keys and the first 12 hex digits of `bissl.content_id`, and the output onnxruntime computes for the first
image of X.npy (NCHW float32), rounded to 4 decimals. Needs the pip packages onnx and onnxruntime
(tools/interop.sh installs them).
"""
import sys

import numpy as np
import onnx
import onnxruntime


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, inputs = sys.argv[1], sys.argv[2]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    print(f"opset {model.opset_import[0].version} | inputs {[(i.name, dims(i)) for i in model.graph.input]}"
          f" | outputs {[(o.name, dims(o)) for o in model.graph.output]}")
    print(f"metadata {sorted(meta)} content id {meta.get('bissl.content_id', '-')[:12]}")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {model.graph.input[0].name: np.load(inputs)})
    print(f"onnxruntime {model.graph.output[0].name}[0] {np.round(out[0], 4)}")


if __name__ == "__main__":
    main()
