/// The seed of a run: every random choice derives from it. Recorded in run configs and provenance as
/// a JSON integer, the two's-complement bit pattern of the 64-bit value (so a seed above `Int64.max`
/// reads as a negative number and comes back unchanged).
public struct Seed: Codable, Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }
    public init(integerLiteral value: UInt64) { self.value = value }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int64.self) { value = UInt64(bitPattern: i) } else { value = try c.decode(UInt64.self) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Int64(bitPattern: value))
    }

    /// The recorded form (provenance `seeds`).
    public var recorded: Int64 { Int64(bitPattern: value) }
    public var description: String { "\(value)" }
}
