import Foundation
import XCTest
@testable import Engine

/// The OpenBLAS kernel choice (`KernelChoice`, `BLAS`) and the CPU feature reader (`CPUFeatures`).
final class KernelChoiceTests: XCTestCase {
    static let avx512 = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 207, avx: true, avx2: true, fma: true,
                                    avx512f: true, avx512bw: true, avx512dq: true, avx512vl: true)
    static let avx2 = CPUFeatures(vendor: "AuthenticAMD", family: 25, model: 33, avx: true, avx2: true, fma: true)
    static let avxOnly = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 42, avx: true)
    /// Knights Landing: AVX-512F without BW/DQ/VL, so no SkylakeX kernel.
    static let avx512FOnly = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 87, avx: true, avx2: true, fma: true, avx512f: true)
    static let sseOnly = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 23)
    static let notX86 = CPUFeatures()

    func testDecisionTable() {
        typealias Case = (cpu: CPUFeatures, detected: String, user: String?, expected: KernelChoice, why: String)
        let keep = KernelChoice(request: nil, reason: .autodetected)
        let cases: [Case] = [
            (Self.avx512, "Prescott", nil, KernelChoice(request: "SkylakeX", reason: .upgraded(from: "Prescott")),
             "a CPU OpenBLAS does not know falls back to Prescott: upgraded to the AVX-512 kernel"),
            (Self.avx512, "prescott", nil, KernelChoice(request: "SkylakeX", reason: .upgraded(from: "prescott")),
             "kernel names compare case-insensitively"),
            (Self.avx512, "Haswell", nil, KernelChoice(request: "SkylakeX", reason: .upgraded(from: "Haswell")),
             "an AVX2 kernel on an AVX-512 CPU is an older class"),
            (Self.avx512, "Unknown", nil, KernelChoice(request: "SkylakeX", reason: .upgraded(from: "Unknown")), "Unknown is the lowest class"),
            (Self.avx512, "SkylakeX", nil, keep, "already the best class"),
            (Self.avx512, "Cooperlake", nil, keep, "same class as SkylakeX: never replaced"),
            (Self.avx512, "SapphireRapids", nil, keep, "same class as SkylakeX: never replaced"),
            (Self.avx512, "GraniteRapids", nil, keep, "a name bissl cannot rank is newer than its table: left alone"),
            (Self.avx512, "Prescott", "Prescott", KernelChoice(request: nil, reason: .setByUser("Prescott")),
             "the user's OPENBLAS_CORETYPE is never overridden"),
            (Self.avx512, "Haswell", "haswell", KernelChoice(request: nil, reason: .setByUser("haswell")), "as the user spelled it"),
            (Self.avx512, "Prescott", "", KernelChoice(request: "SkylakeX", reason: .upgraded(from: "Prescott")),
             "an empty OPENBLAS_CORETYPE counts as unset (OpenBLAS ignores it too)"),
            (Self.avx2, "Zen", nil, keep, "Zen is an AVX2 kernel"),
            (Self.avx2, "Prescott", nil, KernelChoice(request: "Haswell", reason: .upgraded(from: "Prescott")), "AVX2 + FMA: Haswell"),
            (Self.avx2, "Sandybridge", nil, KernelChoice(request: "Haswell", reason: .upgraded(from: "Sandybridge")), "AVX is older than AVX2"),
            (Self.avx2, "Haswell", nil, keep, "already the best class"),
            (Self.avx512FOnly, "Prescott", nil, KernelChoice(request: "Haswell", reason: .upgraded(from: "Prescott")),
             "AVX-512F alone does not run the SkylakeX kernels"),
            (Self.avxOnly, "Prescott", nil, KernelChoice(request: "Sandybridge", reason: .upgraded(from: "Prescott")), "AVX: Sandybridge"),
            (Self.avxOnly, "Bulldozer", nil, keep, "AMD's AVX kernels are of the Sandybridge class"),
            (Self.sseOnly, "Prescott", nil, keep, "nothing better to pick"),
            (Self.sseOnly, "Core2", "Prescott", KernelChoice(request: nil, reason: .setByUser("Prescott")), "user setting"),
            (Self.notX86, "ARMV8", nil, keep, "non-x86: OpenBLAS's pick stands"),
            (Self.notX86, "NEOVERSEN1", "ARMV8", KernelChoice(request: nil, reason: .setByUser("ARMV8")), "user setting"),
        ]
        for c in cases {
            XCTAssertEqual(KernelChoice.decide(cpu: c.cpu, detected: c.detected, userSetting: c.user), c.expected,
                           "\(c.cpu.names) detected \(c.detected) user \(c.user ?? "unset"): \(c.why)")
        }
    }

    /// CPUID agrees with the kernel's view in /proc/cpuinfo (flags there are also cleared when the OS
    /// does not save the registers): the same extensions, and the brand string as `model name`.
    func testCPUFeaturesMatchProcCPUInfo() throws {
        #if os(Linux) && arch(x86_64)
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let firstCPU = info.components(separatedBy: "\n\n")[0]
        func field(_ name: String) -> String? {
            firstCPU.split(separator: "\n").first { $0.hasPrefix(name) }
                .map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) }
        }
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        let cpu = CPUFeatures.current
        for name in ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"] {
            XCTAssertEqual(cpu.names.contains(name), flags.contains(name), name)
        }
        XCTAssertEqual(cpu.brand, field("model name"))
        XCTAssertEqual(String(cpu.family), field("cpu family"))
        XCTAssertEqual(String(cpu.model), field("model"))
        XCTAssertEqual(cpu.vendor, field("vendor_id"))
        #else
        throw XCTSkip("needs /proc/cpuinfo on x86-64 Linux")
        #endif
    }

    /// The engine never runs below the best kernel class this CPU supports unless the user asked for it,
    /// and leaves OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS as the process started with them.
    func testEngineKernelAndEnvironment() throws {
        let kernel = BLAS.kernel  // opens the library if no test has yet
        let start = try startEnvironment()
        if let user = start["OPENBLAS_CORETYPE"], !user.isEmpty {
            XCTAssertEqual(kernel.reason, .setByUser(user))
            XCTAssertEqual(kernel.choice, "set by user: OPENBLAS_CORETYPE=\(user)")
        } else if kernel.notSwitchedTo == nil, let best = KernelChoice.bestSupported(by: .current) {
            let have = try XCTUnwrap(KernelChoice.instructionClass(of: kernel.name), "\(kernel.name) is not in the table")
            XCTAssertGreaterThanOrEqual(have, KernelChoice.instructionClass(of: best)!, "\(kernel.name) on a CPU that runs \(best)")
        }
        for name in ["OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS"] {
            XCTAssertEqual(getenv(name).map { String(cString: $0) }, start[name], "\(name) as the process started")
        }
    }

    /// The environment the process started with (/proc/self/environ: setenv does not change it).
    private func startEnvironment() throws -> [String: String] {
        #if os(Linux)
        let data = try Data(contentsOf: URL(fileURLWithPath: "/proc/self/environ"))
        var out: [String: String] = [:]
        for entry in data.split(separator: 0) {
            let s = String(decoding: entry, as: UTF8.self)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        }
        return out
        #else
        throw XCTSkip("needs /proc/self/environ")
        #endif
    }
}
