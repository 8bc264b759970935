/// What the engine's numbers and speed depend on, as text: recorded in every training run's provenance
/// and printed by `bissl doctor` and the benchmarks.
public enum EngineEnvironment {
    /// Threads the engine splits its loops and GEMM pieces over (`ProcessorCount.available`).
    public static var threads: Int { Parallel.threads }

    /// `cpu` (brand string), `cpuFeatures` (space-separated, `CPUFeatures.names`), `threads`, `blas`
    /// (`openblas_get_config()`), `blasKernel` (`openblas_get_corename()`) and `blasKernelChoice`
    /// (`BLAS.Kernel.choice`), `convKernels` (`convolutionKernels`). Opens OpenBLAS if the engine has not yet.
    public static var record: [String: String] {
        let cpu = CPUFeatures.current, kernel = BLAS.kernel
        return ["cpu": cpu.brand, "cpuFeatures": cpu.names.joined(separator: " "), "threads": String(threads),
                "blas": kernel.config, "blasKernel": kernel.name, "blasKernelChoice": kernel.choice,
                "convKernels": convolutionKernels]
    }

    /// The vector level of the engine's own direct 3x3 convolution kernels (`AVX-512F+FMA`, `AVX2+FMA` or
    /// `baseline (SSE2)`): the widest this CPU has, chosen at run time.
    public static var convolutionKernels: String { DirectConvolution.levelName }
}
