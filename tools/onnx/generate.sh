#!/usr/bin/env bash
# Regenerates Sources/Publish/ONNX/onnx-subset.pb.swift from schemas/onnx/onnx-subset.proto.
# Run by hand after editing the .proto, never by the build or CI. Needs protoc (apt protobuf-compiler)
# and protoc-gen-swift of the swift-protobuf version Package.swift names (1.39.0), built outside the
# repository:
#   git clone --branch 1.39.0 https://github.com/apple/swift-protobuf /tmp/swift-protobuf
#   (cd /tmp/swift-protobuf && swift build -c release --product protoc-gen-swift)
#   PROTOC_GEN_SWIFT=/tmp/swift-protobuf/.build/release/protoc-gen-swift tools/onnx/generate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PLUGIN=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift)}
OUT=Sources/Publish/ONNX
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
protoc --plugin=protoc-gen-swift="$PLUGIN" --proto_path=schemas/onnx --swift_out="$TMP" \
  --swift_opt=Visibility=Internal onnx-subset.proto
{
  echo "// Generated from schemas/onnx/onnx-subset.proto (a subset of onnx.proto of ONNX 1.17.0, IR version 10,"
  echo "// written from the public specification) by tools/onnx/generate.sh with $(protoc --version) and"
  echo "// protoc-gen-swift $("$PLUGIN" --version | awk '{print $NF}') (apple/swift-protobuf). Do not edit; regenerate."
  echo
  cat "$TMP/onnx-subset.pb.swift"
} > "$OUT/onnx-subset.pb.swift"
echo "wrote $OUT/onnx-subset.pb.swift"
