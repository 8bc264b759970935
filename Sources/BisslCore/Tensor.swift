import Foundation

/// A dense tensor as stored in a checkpoint: dtype, shape and raw bytes.
///
/// - `shape`: PyTorch order (OIHW for conv weights, `[out, in]` for linear weights); `[]` is a
///   0-dim scalar (e.g. `num_batches_tracked`), a shape containing 0 is an empty tensor.
/// - `data`: C-contiguous, little-endian, exactly `count * dtype.size` bytes.
public struct Tensor: Equatable, Sendable {
    public var dtype: DType
    public var shape: [Int]
    public var data: Data

    /// Creates a tensor from raw little-endian bytes.
    /// - Throws: `CheckpointError.invalid` when `data.count != shape.product * dtype.size` or that
    ///   product overflows.
    public init(dtype: DType, shape: [Int], data: Data) throws {
        guard let expected = dtype.byteCount(shape: shape) else {
            throw CheckpointError.invalid("tensor of dtype \(dtype.rawValue) and shape \(shape) is too large or has a negative size")
        }
        guard data.count == expected else {
            throw CheckpointError.invalid(
                "tensor of dtype \(dtype.rawValue) and shape \(shape) needs \(expected) bytes, got \(data.count)")
        }
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    /// A float32 tensor from values in C order.
    public init(float32 values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "value count does not match shape \(shape)")
        self.dtype = .float32
        self.shape = shape
        self.data = values.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    /// A 0-dim int64 tensor, as PyTorch stores `num_batches_tracked`.
    public init(int64 value: Int64) {
        self.dtype = .int64
        self.shape = []
        self.data = withUnsafeBytes(of: value.littleEndian) { Data($0) }
    }

    /// Number of elements (1 for a 0-dim tensor).
    public var count: Int { shape.reduce(1, *) }

    /// Values widened exactly to Float64 (every dtype here is exactly representable in Float64).
    public func doubles() -> [Double] {
        let n = count
        return data.withUnsafeBytes { raw -> [Double] in
            func load<T: FixedWidthInteger>(_: T.Type, _ i: Int) -> T {
                T(littleEndian: raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
            }
            switch dtype {
            case .float64: return (0..<n).map { Double(bitPattern: load(UInt64.self, $0)) }
            case .float32: return (0..<n).map { Double(Float(bitPattern: load(UInt32.self, $0))) }
            case .float16: return (0..<n).map { Double(halfToFloat(load(UInt16.self, $0))) }
            case .bfloat16: return (0..<n).map { Double(Float(bitPattern: UInt32(load(UInt16.self, $0)) << 16)) }
            case .int64: return (0..<n).map { Double(load(Int64.self, $0)) }
            case .int32: return (0..<n).map { Double(load(Int32.self, $0)) }
            case .int16: return (0..<n).map { Double(load(Int16.self, $0)) }
            case .int8: return (0..<n).map { Double(load(Int8.self, $0)) }
            case .uint8: return (0..<n).map { Double(load(UInt8.self, $0)) }
            case .bool: return (0..<n).map { load(UInt8.self, $0) != 0 ? 1 : 0 }
            }
        }
    }

    /// Values as Float32: exact for float32/float16/bfloat16 and small integers, rounded for float64.
    public func floats() -> [Float] {
        if dtype == .float32 {
            return data.withUnsafeBytes { raw in
                (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        return doubles().map { Float($0) }
    }
}

/// IEEE 754 binary16 bit pattern to Float, exact (subnormals, infinities and NaN included).
@inlinable
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1f)
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        // zero or subnormal: mantissa * 2^-24
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 0x1f {
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}
