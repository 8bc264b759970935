import Checkpoint
import Foundation
import XCTest
import Engine
import TestSupport

/// `bissl doctor`: the OpenBLAS kernel the binary runs on, with OPENBLAS_CORETYPE unset and set.
final class DoctorCLITests: XCTestCase {
    private func doctor(coretype: String?) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = coretype
        let r = try BisslBinary.run(["doctor", "--json"], environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
        return try XCTUnwrap(object as? [String: String], r.stdout)
    }

    /// Unset: OpenBLAS's own pick, or the best kernel this CPU supports when OpenBLAS fell back below it.
    func testUnsetRunsTheBestKernelTheCPUSupports() throws {
        let report = try doctor(coretype: nil)
        let kernel = try XCTUnwrap(report["blasKernel"]), choice = try XCTUnwrap(report["blasKernelChoice"])
        XCTAssertEqual(report["cpu"], CPUFeatures.current.brand)
        XCTAssertEqual(report["threads"], String(EngineEnvironment.threads))
        XCTAssertTrue(report["blas"]?.contains("OpenBLAS") == true, report["blas"] ?? "")
        XCTAssertEqual(report["convKernels"], EngineEnvironment.convolutionKernels)
        guard let best = KernelChoice.bestSupported(by: .current) else {
            return XCTAssertEqual(choice, "autodetected")
        }
        if choice.hasPrefix("upgraded from ") {
            XCTAssertEqual(kernel, best)
        } else {
            XCTAssertEqual(choice, "autodetected", "no fallback left in place, nothing set by the user")
            let have = try XCTUnwrap(KernelChoice.instructionClass(of: kernel), "\(kernel) is not in the table")
            XCTAssertGreaterThanOrEqual(have, KernelChoice.instructionClass(of: best)!, "\(kernel) on a CPU that runs \(best)")
        }
    }

    /// Set: the user's kernel, never overridden, even a generic one on a CPU with AVX-512.
    func testUserSettingIsKept() throws {
        for coretype in ["Prescott"] + (CPUFeatures.current.avx2 && CPUFeatures.current.fma ? ["Haswell"] : []) {
            let report = try doctor(coretype: coretype)
            XCTAssertEqual(report["blasKernel"], coretype)
            XCTAssertEqual(report["blasKernelChoice"], "set by user: OPENBLAS_CORETYPE=\(coretype)")
            XCTAssertTrue(report["blas"]?.contains(coretype) == true, "openblas_get_config names the kernel: \(report["blas"] ?? "")")
        }
    }

    func testTextReport() throws {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = "Prescott"
        let r = try BisslBinary.run(["doctor"], environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "bissl \(bisslVersion)")
        XCTAssertTrue(lines.contains("kernel:    Prescott (set by user: OPENBLAS_CORETYPE=Prescott)"), r.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("features:  ") }, r.stdout)
    }
}
