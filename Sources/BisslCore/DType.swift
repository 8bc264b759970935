import Foundation

/// Element type of a stored tensor, named as PyTorch names it (`torch.float32` -> `.float32`).
///
/// Bytes are always kept exactly as the source stored them (little-endian after byte-order
/// normalisation). `bfloat16` is kept as its raw 16-bit patterns and is never reinterpreted as
/// `float16`.
public enum DType: String, CaseIterable, Codable, Sendable {
    case float64, float32, float16, bfloat16
    case int64, int32, int16, int8, uint8
    case bool

    /// Size of one element in bytes.
    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// Bytes of a tensor of this dtype and `shape` (`size` times the product of the dimensions); nil
    /// when a dimension is negative or the product overflows `Int` (shapes read from files).
    public func byteCount(shape: [Int]) -> Int? {
        ([size] + shape).checkedProduct
    }

    /// True for the floating-point types (the ones a cast to another precision applies to).
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16: return true
        default: return false
        }
    }
}
