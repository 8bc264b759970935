/// Which OpenBLAS kernel the engine runs on: a pure function of the CPU's features, the kernel OpenBLAS
/// picked by itself and the user's `OPENBLAS_CORETYPE`, applied by `BLAS` when it opens the library.
///
/// OpenBLAS built with `DYNAMIC_ARCH` (Debian's libopenblas0) picks its kernel from a table of known CPU
/// models; a model newer than the library falls back to a generic kernel (`Prescott`, SSE3) even when the
/// CPU has AVX2 or AVX-512, and runs 2-4x slower. The kernel names are OpenBLAS's
/// (`openblas_get_corename`, the values `OPENBLAS_CORETYPE` accepts: OpenBLAS README, "Setting the
/// number of threads / OPENBLAS_CORETYPE" and driver/others/dynamic.c).
public struct KernelChoice: Equatable, Sendable {
    /// How the kernel was chosen.
    public enum Reason: Equatable, Sendable {
        /// OpenBLAS's own pick, already the best class the CPU supports (or one bissl cannot rank).
        case autodetected
        /// OpenBLAS picked `from`, of an older instruction-set class than the CPU supports; bissl requests
        /// the best supported kernel instead.
        case upgraded(from: String)
        /// The user's `OPENBLAS_CORETYPE` (the value as set), never overridden.
        case setByUser(String)
    }

    /// The kernel to request (`OPENBLAS_CORETYPE`) when reopening the library; nil keeps it as loaded.
    public var request: String?
    public var reason: Reason

    /// Instruction-set class of OpenBLAS's x86-64 kernels: 1 SSE2/SSE3, 2 AVX (FMA4/FMA3 on AMD's
    /// Bulldozer family), 3 AVX2 + FMA, 4 AVX-512 (F, BW, DQ, VL); 0 for `Unknown`; nil for a name not in
    /// the table. Names are matched case-insensitively, as OpenBLAS matches `OPENBLAS_CORETYPE`.
    public static func instructionClass(of kernel: String) -> Int? { classes[kernel.lowercased()] }

    private static let classes: [String: Int] = {
        var table: [String: Int] = ["unknown": 0]
        for name in ["Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn",
                     "Dunnington", "Nehalem", "Athlon", "Opteron", "Opteron_SSE3", "Barcelona", "Nano", "Bobcat"] {
            table[name.lowercased()] = 1
        }
        for name in ["Sandybridge", "Bulldozer", "Piledriver", "Steamroller", "Excavator"] { table[name.lowercased()] = 2 }
        for name in ["Haswell", "Zen"] { table[name.lowercased()] = 3 }
        for name in ["SkylakeX", "Cooperlake", "SapphireRapids"] { table[name.lowercased()] = 4 }
        return table
    }()

    /// The best kernel `cpu` supports, as an `OPENBLAS_CORETYPE` value with the class it stands for:
    /// `SkylakeX` with AVX-512 F/BW/DQ/VL, `Haswell` with AVX2 and FMA, `Sandybridge` with AVX; nil
    /// otherwise (SSE-only or non-x86 machines, where OpenBLAS's pick stands).
    public static func bestSupported(by cpu: CPUFeatures) -> String? {
        if cpu.hasAVX512Kernels { return "SkylakeX" }
        if cpu.avx2 && cpu.fma { return "Haswell" }
        if cpu.avx { return "Sandybridge" }
        return nil
    }

    /// The decision.
    /// - Parameters:
    ///   - cpu: the processor's features (`CPUFeatures.current`).
    ///   - detected: `openblas_get_corename()` of the library loaded without `OPENBLAS_CORETYPE`.
    ///   - userSetting: the `OPENBLAS_CORETYPE` in the environment, nil when unset or empty.
    /// - Returns: `setByUser` whenever the user set the variable; `upgraded` when `detected` is of an
    ///   older class than `bestSupported(by: cpu)`; otherwise `autodetected` (also for a `detected` name
    ///   `instructionClass` does not know: a kernel newer than this table, left alone).
    public static func decide(cpu: CPUFeatures, detected: String, userSetting: String?) -> KernelChoice {
        if let user = userSetting, !user.isEmpty { return KernelChoice(request: nil, reason: .setByUser(user)) }
        guard let best = bestSupported(by: cpu), let bestClass = instructionClass(of: best),
              let detectedClass = instructionClass(of: detected), detectedClass < bestClass else {
            return KernelChoice(request: nil, reason: .autodetected)
        }
        return KernelChoice(request: best, reason: .upgraded(from: detected))
    }
}
