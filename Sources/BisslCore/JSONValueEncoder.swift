import Foundation

/// Encodes an `Encodable` value straight into a `JSONValue`, keeping each number's Swift type:
/// `Double` and `Float` become `.double` (a Float as its shortest decimal, `4.8` not
/// `4.800000190734863`), every integer type `.int` (a `UInt64` above `Int64.max` as its two's-complement
/// bit pattern, the way seeds are recorded), `nil` optionals are left out (as `JSONEncoder` does).
/// Going through `JSONEncoder` text instead would turn `10.0` into the integer `10`.
public struct JSONValueEncoder {
    public init() {}

    /// - Throws: `EncodingError.invalidValue` when `value` encodes nothing.
    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let node = Node()
        try value.encode(to: NodeEncoder(node: node, codingPath: []))
        return node.resolved
    }

    /// `encode(value)` as an object (a run config, recorded hyperparameters).
    /// - Throws: `CheckpointError.invalid` when `value` is not encoded as an object.
    public func encodeObject<T: Encodable>(_ value: T) throws -> [String: JSONValue] {
        guard case .object(let o) = try encode(value) else {
            throw CheckpointError.invalid("\(T.self) does not encode as a JSON object")
        }
        return o
    }
}

extension JSONValue {
    /// Decodes `T` from this value (through JSON text; any number decodes into a Double field).
    /// - Throws: `DecodingError` naming the first missing or mistyped field.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(self))
    }
}

private final class Node {
    var value: JSONValue = .null
    var object: [String: Node]?
    var array: [Node]?

    var resolved: JSONValue {
        if let object { return .object(object.mapValues(\.resolved)) }
        if let array { return .array(array.map(\.resolved)) }
        return value
    }

    func set<T: Encodable>(_ v: T, codingPath: [CodingKey]) throws {
        switch v {
        case let x as Bool: value = .bool(x)
        case let x as String: value = .string(x)
        case let x as Double: value = .double(x)
        case let x as Float: value = .double(Double("\(x)") ?? Double(x))
        case let x as Int: value = .int(Int64(x))
        case let x as Int64: value = .int(x)
        case let x as Int32: value = .int(Int64(x))
        case let x as UInt64: value = .int(Int64(bitPattern: x))
        case let x as UInt32: value = .int(Int64(x))
        default: try v.encode(to: NodeEncoder(node: self, codingPath: codingPath))
        }
    }
}

private struct NodeEncoder: Encoder {
    let node: Node
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if node.object == nil { node.object = [:] }
        return KeyedEncodingContainer(Keyed<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if node.array == nil { node.array = [] }
        return Unkeyed(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { Single(node: node, codingPath: codingPath) }
}

private struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    var codingPath: [CodingKey]

    func child(_ key: Key) -> Node {
        let n = Node()
        node.object![key.stringValue] = n
        return n
    }
    mutating func encodeNil(forKey key: Key) throws { child(key).value = .null }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try child(key).set(value, codingPath: codingPath + [key]) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: child(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        NodeEncoder(node: child(key), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(node: node, codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder { NodeEncoder(node: child(key), codingPath: codingPath + [key]) }
}

private struct Unkeyed: UnkeyedEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    var count: Int { node.array!.count }

    func append() -> Node {
        let n = Node()
        node.array!.append(n)
        return n
    }
    mutating func encodeNil() throws { append().value = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { try append().set(value, codingPath: codingPath) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: append(), codingPath: codingPath).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer { NodeEncoder(node: append(), codingPath: codingPath).unkeyedContainer() }
    mutating func superEncoder() -> Encoder { NodeEncoder(node: append(), codingPath: codingPath) }
}

private struct Single: SingleValueEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    mutating func encodeNil() throws { node.value = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.set(value, codingPath: codingPath) }
}
