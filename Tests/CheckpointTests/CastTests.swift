@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// Precision casts and rounding, against bit patterns computed by numpy and torch
/// (`Tests/Fixtures/layout/rounding.json`, written by tools/fixtures/make_layout_fixtures.py).
final class CastTests: XCTestCase {
    struct Rounding: Decodable {
        let float32_bits: [UInt32]
        let float32_to_float16: [UInt16]
        let float32_to_bfloat16: [UInt16]
        let float64_bits: [String]
        let float64_to_float16: [UInt16]
        let float64_to_bfloat16: [UInt16?]
    }

    static func rounding() throws -> Rounding {
        try JSONDecoder().decode(Rounding.self, from: Data(contentsOf: Fixtures.url("layout/rounding.json")))
    }

    func testFloat32ToHalfAndBFloat16MatchNumpyAndTorchBitForBit() throws {
        let r = try Self.rounding()
        XCTAssertGreaterThan(r.float32_bits.count, 300)
        for (i, bits) in r.float32_bits.enumerated() {
            let x = Double(Float(bitPattern: bits))
            XCTAssertEqual(FloatRounding.halfBits(x), r.float32_to_float16[i], "f16 of \(Float(bitPattern: bits)) (#\(i))")
            XCTAssertEqual(FloatRounding.bfloat16Bits(x), r.float32_to_bfloat16[i], "bf16 of \(Float(bitPattern: bits)) (#\(i))")
        }
    }

    func testFloat64RoundsDirectlyWithoutDoubleRounding() throws {
        let r = try Self.rounding()
        for (i, text) in r.float64_bits.enumerated() {
            let x = Double(bitPattern: UInt64(text)!)
            XCTAssertEqual(FloatRounding.halfBits(x), r.float64_to_float16[i], "f16 of \(x) (#\(i))")
            if let expected = r.float64_to_bfloat16[i] {
                XCTAssertEqual(FloatRounding.bfloat16Bits(x), expected, "bf16 of \(x) (#\(i))")
            }
        }
        // 1 + 2^-8 + 2^-30: via float32 it becomes the tie 1 + 2^-8 and rounds down to 1.0; directly it rounds up.
        XCTAssertEqual(FloatRounding.bfloat16Bits(1 + 0x1p-8 + 0x1p-30), 0x3F81)
    }

    func testNaNStaysNaN() {
        XCTAssertTrue(halfToFloat(FloatRounding.halfBits(.nan)).isNaN)
        XCTAssertTrue(Float(bitPattern: UInt32(FloatRounding.bfloat16Bits(-.nan)) << 16).isNaN)
    }

    /// A small state dict with a BN layer whose running_var holds 1e-8 and 7e4.
    static func bnDict() -> StateDict {
        var d = StateDict()
        d["conv1.weight"] = Tensor(float32: [0.5, 70000, 1e-8, -2], shape: [1, 1, 2, 2])
        d["bn1.weight"] = Tensor(float32: [1, 1], shape: [2])
        d["bn1.running_mean"] = Tensor(float32: [0.25, 1e-9], shape: [2])
        d["bn1.running_var"] = Tensor(float32: [1e-8, 7e4], shape: [2])
        d["bn1.num_batches_tracked"] = Tensor(int64: 12)
        return d
    }

    func testHalfCastKeepsBatchNormBuffersUnlessAsked() throws {
        let (half, warnings) = try Precision.cast(Self.bnDict(), to: .float16, castBuffers: false)
        XCTAssertEqual(Array(half.keys), Array(Self.bnDict().keys))
        XCTAssertEqual(half["conv1.weight"]!.dtype, .float16)
        XCTAssertEqual(half["bn1.weight"]!.dtype, .float16)
        XCTAssertEqual(half["bn1.running_var"], Self.bnDict()["bn1.running_var"], "kept in float32, bit for bit")
        XCTAssertEqual(half["bn1.running_mean"], Self.bnDict()["bn1.running_mean"])
        XCTAssertEqual(half["bn1.num_batches_tracked"], Tensor(int64: 12))
        // 0.5 -> 0x3800, 70000 -> inf 0x7C00, 1e-8 -> 0, -2 -> 0xC000 (numpy float16 semantics).
        XCTAssertEqual(half["conv1.weight"]!.data, Data([0x00, 0x38, 0x00, 0x7C, 0x00, 0x00, 0x00, 0xC0]))
        XCTAssertEqual(warnings, [
            "conv1.weight: 1 of 4 values overflow float16 (|x| > 65504, become inf), e.g. 70000.0",
            "conv1.weight: 1 of 4 nonzero values vanish in float16 (become 0), e.g. 9.99999993922529e-09",
        ])

        let (all, w2) = try Precision.cast(Self.bnDict(), to: .float16, castBuffers: true)
        XCTAssertEqual(all["bn1.running_var"]!.dtype, .float16)
        XCTAssertEqual(all["bn1.running_var"]!.data, Data([0x00, 0x00, 0x00, 0x7C]))
        XCTAssertEqual(all["bn1.num_batches_tracked"], Tensor(int64: 12), "integers are never cast")
        XCTAssertTrue(w2.contains("bn1.running_var: 1 of 2 values overflow float16 (|x| > 65504, become inf), e.g. 70000.0"), "\(w2)")
        XCTAssertTrue(w2.contains("bn1.running_var: 1 of 2 nonzero values vanish in float16 (become 0), e.g. 9.99999993922529e-09"), "\(w2)")
        XCTAssertTrue(w2.contains("bn1.running_mean: 1 of 2 nonzero values vanish in float16 (become 0), e.g. 9.999999717180685e-10"), "\(w2)")
    }

    func testBFloat16KeepsRangeAndFloat32RoundTripIsExact() throws {
        let (bf, warnings) = try Precision.cast(Self.bnDict(), to: .bfloat16, castBuffers: true)
        XCTAssertEqual(warnings, [], "bfloat16 has float32's exponent range")
        XCTAssertEqual(bf["conv1.weight"]!.floats(), [0.5, 70144, Float(bitPattern: 0x322C_0000), -2])
        let (back, w) = try Precision.cast(bf, to: .float32, castBuffers: true)
        XCTAssertEqual(w, [])
        XCTAssertEqual(back["conv1.weight"]!.floats(), bf["conv1.weight"]!.floats(), "widening is exact")
        XCTAssertThrowsError(try Precision.cast(bf, to: .int8, castBuffers: false))

        // Widening casts are exact and apply to BN buffers too, even without castBuffers.
        let (half, _) = try Precision.cast(Self.bnDict(), to: .float16, castBuffers: true)
        let (wide, w3) = try Precision.cast(half, to: .float32, castBuffers: false)
        XCTAssertEqual(w3, [])
        XCTAssertEqual(wide["bn1.running_var"]!.dtype, .float32)
        XCTAssertEqual(wide["bn1.running_var"]!.floats(), [0, .infinity])
        // Narrowing float64 -> float32 keeps buffers unless asked.
        var f64 = StateDict()
        f64["bn1.running_var"] = try Tensor(dtype: .float64, shape: [1], data: withUnsafeBytes(of: (1e-50).bitPattern.littleEndian) { Data($0) })
        f64["conv1.weight"] = f64["bn1.running_var"]
        let (narrow, w4) = try Precision.cast(f64, to: .float32, castBuffers: false)
        XCTAssertEqual(narrow["bn1.running_var"]!.dtype, .float64)
        XCTAssertEqual(narrow["conv1.weight"]!.floats(), [0])
        XCTAssertEqual(w4, ["conv1.weight: 1 of 1 nonzero values vanish in float32 (become 0), e.g. 1e-50"])
    }

    func testImportCheckWarnsOnZeroAndInfiniteVarianceInHalfStorage() throws {
        let (half, _) = try Precision.cast(Self.bnDict(), to: .float16, castBuffers: true)
        XCTAssertEqual(BatchNormCheck.warnings(half, component: "backbone"), [
            "backbone bn1.running_var: 1 zero, 1 inf of 2 values (degenerate BatchNorm statistics; stored as float16, which cannot hold very small or large variances)",
        ])
        XCTAssertEqual(BatchNormCheck.warnings(Self.bnDict(), component: "backbone"), [])
        var nan = Self.bnDict()
        nan["bn1.running_mean"] = Tensor(float32: [.nan, 0], shape: [2])
        XCTAssertEqual(BatchNormCheck.warnings(nan, component: "x"), ["x bn1.running_mean: 1 NaN of 2 values (degenerate BatchNorm statistics)"])
    }
}
