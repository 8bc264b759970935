import CBLAS
import Foundation

/// The processor the engine runs on, read with CPUID (Intel SDM vol. 2A, "CPUID"; AMD APM vol. 3):
/// identity, and the vector extensions that decide which OpenBLAS kernel can run (`KernelChoice`).
///
/// A vector extension counts only when the operating system also saves its registers (XCR0 read with
/// XGETBV: bits 1-2 for the 256-bit AVX state, bits 5-7 for the AVX-512 state), the test OpenBLAS
/// itself makes before using such a kernel. On non-x86 machines every flag is false and the strings
/// are empty.
public struct CPUFeatures: Equatable, Sendable {
    /// CPUID vendor string (`GenuineIntel`, `AuthenticAMD`); empty when unknown.
    public var vendor: String
    /// Brand string (the `model name` of /proc/cpuinfo); empty when the CPU has none.
    public var brand: String
    /// Display family and model (base values combined with the extended ones as the SDM specifies).
    public var family: Int
    public var model: Int
    public var avx: Bool
    public var avx2: Bool
    public var fma: Bool
    public var avx512f: Bool
    public var avx512bw: Bool
    public var avx512dq: Bool
    public var avx512vl: Bool

    public init(vendor: String = "", brand: String = "", family: Int = 0, model: Int = 0, avx: Bool = false,
                avx2: Bool = false, fma: Bool = false, avx512f: Bool = false, avx512bw: Bool = false,
                avx512dq: Bool = false, avx512vl: Bool = false) {
        self.vendor = vendor
        self.brand = brand
        self.family = family
        self.model = model
        self.avx = avx
        self.avx2 = avx2
        self.fma = fma
        self.avx512f = avx512f
        self.avx512bw = avx512bw
        self.avx512dq = avx512dq
        self.avx512vl = avx512vl
    }

    /// AVX-512 F, BW, DQ and VL together: what OpenBLAS's SkylakeX kernels use.
    public var hasAVX512Kernels: Bool { avx512f && avx512bw && avx512dq && avx512vl }

    /// The present extensions by their /proc/cpuinfo names, in the order of the fields.
    public var names: [String] {
        [("avx", avx), ("avx2", avx2), ("fma", fma), ("avx512f", avx512f), ("avx512bw", avx512bw),
         ("avx512dq", avx512dq), ("avx512vl", avx512vl)].filter(\.1).map(\.0)
    }

    /// This machine's processor (read once).
    public static let current = read()

    private static func cpuid(_ leaf: UInt32, _ subleaf: UInt32 = 0) -> [UInt32] {
        var regs: [UInt32] = [0, 0, 0, 0]
        _ = regs.withUnsafeMutableBufferPointer { bissl_cpuid(leaf, subleaf, $0.baseAddress) }
        return regs
    }

    private static func ascii(_ words: [UInt32]) -> String {
        var bytes: [UInt8] = []
        for w in words { for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8((w >> UInt32(shift)) & 0xFF)) } }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    private static func read() -> CPUFeatures {
        let leaf0 = cpuid(0)
        let maxLeaf = leaf0[0]
        guard maxLeaf >= 1 else { return CPUFeatures() }
        var f = CPUFeatures(vendor: ascii([leaf0[1], leaf0[3], leaf0[2]]))  // EBX, EDX, ECX
        let leaf1 = cpuid(1)
        let baseFamily = Int((leaf1[0] >> 8) & 0xF), baseModel = Int((leaf1[0] >> 4) & 0xF)
        f.family = baseFamily == 0xF ? baseFamily + Int((leaf1[0] >> 20) & 0xFF) : baseFamily
        f.model = baseFamily == 0x6 || baseFamily == 0xF ? baseModel + Int((leaf1[0] >> 16) & 0xF) << 4 : baseModel
        let osxsave = leaf1[2] & (1 << 27) != 0
        let xcr0 = osxsave ? bissl_xgetbv0() : 0
        let osYMM = xcr0 & 0x6 == 0x6, osZMM = osYMM && xcr0 & 0xE0 == 0xE0
        f.avx = osYMM && leaf1[2] & (1 << 28) != 0
        f.fma = osYMM && leaf1[2] & (1 << 12) != 0
        if maxLeaf >= 7 {
            let ebx = cpuid(7)[1]
            f.avx2 = osYMM && ebx & (1 << 5) != 0
            f.avx512f = osZMM && ebx & (1 << 16) != 0
            f.avx512dq = osZMM && ebx & (1 << 17) != 0
            f.avx512bw = osZMM && ebx & (1 << 30) != 0
            f.avx512vl = osZMM && ebx & (1 << 31) != 0
        }
        if cpuid(0x8000_0000)[0] >= 0x8000_0004 {
            f.brand = ascii((0x8000_0002...0x8000_0004).flatMap { cpuid(UInt32($0)) })
        }
        return f
    }
}
