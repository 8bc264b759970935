import ArgumentParser
import Checkpoint
import Engine
import Foundation

/// `bissl doctor [--json]`: what the engine runs on.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the CPU, its vector extensions, the engine's threads, the OpenBLAS kernel and the convolution kernels in use.",
        discussion: """
            The kernel line says how it was chosen: autodetected by OpenBLAS, upgraded by bissl from a \
            generic kernel OpenBLAS fell back to on a CPU it does not know, or set by OPENBLAS_CORETYPE \
            (never overridden). Every training run records the same fields in its provenance.
            """)

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        var record = EngineEnvironment.record
        record["version"] = bisslVersion
        if json {
            let data = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
            printJSONText(String(decoding: data, as: UTF8.self))
            return
        }
        let cpu = CPUFeatures.current, kernel = BLAS.kernel
        let identity = cpu.vendor.isEmpty ? "" : " (\(cpu.vendor), family \(cpu.family), model \(cpu.model))"
        ZooOutput.printLine("bissl \(bisslVersion)")
        ZooOutput.printLine("cpu:       \(cpu.brand.isEmpty ? "unknown" : cpu.brand)\(identity)")
        ZooOutput.printLine("features:  \(cpu.names.isEmpty ? "none of avx, avx2, fma, avx512f/bw/dq/vl" : cpu.names.joined(separator: " "))")
        ZooOutput.printLine("threads:   \(EngineEnvironment.threads) (engine loops and GEMM pieces; OpenBLAS itself single-threaded)")
        ZooOutput.printLine("blas:      \(kernel.config)")
        ZooOutput.printLine("library:   \(kernel.library)")
        ZooOutput.printLine("kernel:    \(kernel.name) (\(kernel.choice))")
        ZooOutput.printLine("conv3x3:   \(EngineEnvironment.convolutionKernels) (the engine's direct 3x3 convolution kernels)")
    }
}
