// swift-tools-version:6.0
// bissl: model zoo, checkpoint format and BiSSL training for self-supervised ResNets.
// Layers, bottom to top: CHDF5/CBLAS/CZlib/CCurl (system shims) -> HDF5 -> Checkpoint -> ... -> bissl (CLI).
import PackageDescription

let package = Package(
    name: "bissl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "bissl", targets: ["bissl"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "Engine", targets: ["Engine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        // Not linked: Engine/Core/BLAS.swift opens libopenblas at first use, after choosing its kernel.
        .systemLibrary(name: "CBLAS", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // The value types every layer shares (Tensor, DType, StateDict, Checkpoint, Architecture,
        // Provenance, JSONValue) and the one-line error protocol; no file formats.
        .target(name: "BisslCore", dependencies: [.product(name: "Collections", package: "swift-collections")]),
        .target(name: "HDF5", dependencies: ["CHDF5", "CZlib"]),
        .target(
            name: "Checkpoint",
            dependencies: [
                "BisslCore", "HDF5", "CZlib",
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "Zoo",
            dependencies: [
                "Checkpoint", "CCurl",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "Datasets",
            dependencies: [
                "BisslCore", "HDF5", "CPNG", "CJPEG", "CZlib",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The engine's own vectorised C kernels (one body per x86 vector level, picked at run time).
        .target(name: "CKernels"),
        .target(name: "Engine", dependencies: ["CBLAS", "CKernels", "BisslCore"]),
        // Open MPI is not linked either: Training/Distributed/MPILibrary.swift opens libmpi under `mpirun`.
        .target(
            name: "Training",
            dependencies: [
                "Engine", "Datasets", "Zoo", "Checkpoint", "HDF5", "CPNG",
                .product(name: "Collections", package: "swift-collections"),
            ]),
        // Where models go next: ONNX export (generated protobuf code committed, see tools/onnx/generate.sh),
        // model cards, Hub-style folders.
        .target(
            name: "Publish",
            dependencies: [
                "Checkpoint", "Engine", "Zoo", "Datasets",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .executableTarget(
            name: "bissl",
            dependencies: [
                "Checkpoint", "Zoo", "Datasets", "Engine", "Training", "Publish",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(name: "BenchSupport"),
        .executableTarget(name: "EngineBench", dependencies: ["Engine", "Checkpoint", "BenchSupport"]),
        .executableTarget(name: "AlignBench", dependencies: ["Training", "Engine", "Checkpoint", "BenchSupport"]),
        .executableTarget(name: "DistributedBench", dependencies: ["Training", "Engine", "Checkpoint", "BenchSupport"]),
        .executableTarget(name: "IOBench", dependencies: ["Checkpoint", "Zoo", "HDF5"]),
        // Shared by the test targets: committed fixtures, npz loading, assertClose, a seeded generator,
        // the built binary's runner.
        .target(name: "TestSupport", dependencies: ["Checkpoint"], path: "Tests/TestSupport"),
        .testTarget(name: "HDF5Tests", dependencies: ["HDF5", "TestSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "CKernels", "Checkpoint", "TestSupport"]),
        .testTarget(name: "ZooTests", dependencies: ["Zoo", "Checkpoint", "TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "TestSupport"]),
        .testTarget(name: "PublishTests", dependencies: ["Publish", "Engine", "Zoo", "Checkpoint", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Engine", "Datasets", "Zoo", "Checkpoint", "TestSupport"]),
        // Tests that run the built `bissl` binary (the training commands' options, errors and outputs).
        .testTarget(name: "CLITests", dependencies: ["Training", "Engine", "Zoo", "Checkpoint", "TestSupport"]),
    ]
)

// Coverage-guided fuzzing of the readers (docs/fuzzing.md): the product exists only when BISSL_FUZZ
// is set, so normal builds never see it. tools/fuzz/build.sh builds it with libFuzzer and ASan.
if Context.environment["BISSL_FUZZ"] != nil {
    package.products.append(.executable(name: "bissl-fuzz", targets: ["BisslFuzz"]))
    package.targets.append(.executableTarget(
        name: "BisslFuzz", dependencies: ["Checkpoint", "Datasets", "HDF5"], path: "tools/fuzz/BisslFuzz",
        // lld: gold (the default here) stops with an internal error in its DWARF reader on this link.
        linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]))
}
