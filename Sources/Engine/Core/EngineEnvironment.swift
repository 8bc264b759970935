/// What the engine's numbers and speed depend on, as text: recorded in every training run's provenance
/// and printed by `bissl doctor` and the benchmarks.
public enum EngineEnvironment {
    /// Threads the engine splits its loops and GEMM pieces over (`ProcessorCount.available`).
    public static var threads: Int { Parallel.threads }

    /// `cpu` (brand string), `cpuFeatures` (space-separated, `CPUFeatures.names`), `threads`, `blas`
    /// (`openblas_get_config()`), `blasKernel` (`openblas_get_corename()`) and `blasKernelChoice`
    /// (`BLAS.Kernel.choice`). Opens OpenBLAS if the engine has not yet.
    public static var record: [String: String] {
        let cpu = CPUFeatures.current, kernel = BLAS.kernel
        return ["cpu": cpu.brand, "cpuFeatures": cpu.names.joined(separator: " "), "threads": String(threads),
                "blas": kernel.config, "blasKernel": kernel.name, "blasKernelChoice": kernel.choice]
    }
}
