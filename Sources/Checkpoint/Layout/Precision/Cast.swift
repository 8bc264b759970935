import Foundation

/// Casts the floating-point tensors of a state dict to another precision.
public enum Precision {
    /// BatchNorm buffers (`running_mean`, `running_var`, `num_batches_tracked`), by key suffix.
    public static func isBatchNormBuffer(_ key: String) -> Bool {
        key.hasSuffix("running_mean") || key.hasSuffix("running_var") || key.hasSuffix("num_batches_tracked")
    }

    /// Casts every floating-point tensor of `dict` to `dtype`, like `tensor.to(dtype)` in PyTorch
    /// (round to nearest, ties to even: `FloatRounding`); integer and bool tensors are unchanged.
    ///
    /// When the cast can lose information (to float16/bfloat16, float64 to float32), BatchNorm
    /// running statistics keep their precision unless `castBuffers` (a variance of 1e-8 or 7e4 does
    /// not survive float16); widening casts (float16/bfloat16 to float32/float64, float32 to float64)
    /// are exact and apply to every floating-point tensor. Shapes and key order are kept.
    /// - Parameters:
    ///   - dtype: `float64`, `float32`, `float16` or `bfloat16`.
    ///   - castBuffers: also cast `running_mean`/`running_var` on a narrowing cast.
    /// - Returns: the cast dict and one warning per tensor whose finite values overflow to infinity
    ///   (|x| above the largest finite value of `dtype`, 65504 for float16) or whose nonzero values
    ///   vanish to zero, with counts and an example value.
    /// - Throws: `CheckpointError.invalid` when `dtype` is not a floating-point type.
    public static func cast(_ dict: StateDict, to dtype: DType, castBuffers: Bool = false) throws -> (StateDict, [String]) {
        guard dtype.isFloatingPoint else {
            throw CheckpointError.invalid("cannot cast weights to \(dtype.rawValue): only float64, float32, float16 and bfloat16 are precisions")
        }
        var out = StateDict()
        var warnings: [String] = []
        for (key, t) in dict {
            guard t.dtype.isFloatingPoint, t.dtype != dtype, castBuffers || isExact(t.dtype, to: dtype) || !isBatchNormBuffer(key) else {
                out[key] = t
                continue
            }
            let values = t.doubles()
            var data = Data(count: values.count * dtype.size)
            var overflow = 0, vanish = 0
            var overflowExample = 0.0, vanishExample = 0.0
            data.withUnsafeMutableBytes { raw in
                for (i, x) in values.enumerated() {
                    let y: Double
                    switch dtype {
                    case .float64:
                        raw.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: i * 8, as: UInt64.self)
                        y = x
                    case .float32:
                        let f = Float(x)
                        raw.storeBytes(of: f.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                        y = Double(f)
                    case .float16:
                        let h = FloatRounding.halfBits(x)
                        raw.storeBytes(of: h.littleEndian, toByteOffset: i * 2, as: UInt16.self)
                        y = Double(halfToFloat(h))
                    default:
                        let b = FloatRounding.bfloat16Bits(x)
                        raw.storeBytes(of: b.littleEndian, toByteOffset: i * 2, as: UInt16.self)
                        y = Double(Float(bitPattern: UInt32(b) << 16))
                    }
                    if x.isFinite && y.isInfinite {
                        if overflow == 0 { overflowExample = x }
                        overflow += 1
                    } else if x != 0 && x.isFinite && y == 0 {
                        if vanish == 0 { vanishExample = x }
                        vanish += 1
                    }
                }
            }
            if overflow > 0 {
                warnings.append("\(key): \(overflow) of \(values.count) values overflow \(dtype.rawValue) (|x| > \(largestFinite(dtype)), become inf), e.g. \(overflowExample)")
            }
            if vanish > 0 {
                warnings.append("\(key): \(vanish) of \(values.count) nonzero values vanish in \(dtype.rawValue) (become 0), e.g. \(vanishExample)")
            }
            out[key] = try Tensor(dtype: dtype, shape: t.shape, data: data)
        }
        return (out, warnings)
    }

    /// True when every value of `source` is exactly representable in `target` (a widening cast).
    public static func isExact(_ source: DType, to target: DType) -> Bool {
        switch (source, target) {
        case (.float16, .float32), (.float16, .float64), (.bfloat16, .float32), (.bfloat16, .float64), (.float32, .float64):
            return true
        default:
            return source == target
        }
    }

    /// Largest finite value of a floating-point dtype, as text (`65504` for float16).
    static func largestFinite(_ dtype: DType) -> String {
        switch dtype {
        case .float16: return "65504"
        case .bfloat16: return "3.3895e38"
        case .float32: return "3.4028e38"
        default: return "1.7977e308"
        }
    }
}
