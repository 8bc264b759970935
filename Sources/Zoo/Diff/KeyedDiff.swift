import Checkpoint
import Foundation

/// One differing key of two flattened JSON documents (provenance, hyperparameters, architecture).
public struct KeyChange: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Only in B.
        case added
        /// Only in A.
        case removed
        /// In both, with different values.
        case changed
    }

    /// Dotted key path: `source.fileName`, `parents[0].relation`, `heads.classifier.dims`.
    public var key: String
    public var kind: Kind
    /// Value in A (nil when added) and in B (nil when removed).
    public var a: JSONValue?
    public var b: JSONValue?

    public init(key: String, kind: Kind, a: JSONValue?, b: JSONValue?) {
        self.key = key
        self.kind = kind
        self.a = a
        self.b = b
    }
}

/// One leaf of a flattened JSON document.
public struct FlatEntry: Equatable, Sendable {
    public var key: String
    public var value: JSONValue
    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// Flattens JSON documents to dotted keys and compares them key by key.
///
/// Flattening: an object member `k` of a value at path `p` becomes `p.k`; a non-empty array of
/// numbers, booleans and nulls is one leaf compared as a whole (`dims`, `layers`); an array holding
/// strings, arrays or objects contributes `p[i]` per element (`source.rules[2]`, `commandLine[3]`,
/// `parents[0].id`), so one changed rule shows alone. Empty objects and empty arrays contribute
/// nothing, so an absent optional field, `[]` and `{}` compare equal.
public enum KeyedDiff {
    /// The JSON form of `value` (as `JSONEncoder` writes it), flattened to dotted keys in key order.
    /// Non-finite doubles become the strings `NaN`, `Infinity`, `-Infinity`.
    /// - Throws: `ZooError.invalid` when `value`'s `encode(to:)` fails.
    public static func flatten<T: Encodable>(_ value: T) throws -> [FlatEntry] {
        let json: JSONValue
        do {
            let encoder = JSONEncoder.bissl()
            let data = try encoder.encode(value)
            json = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ZooError.invalid("cannot compare \(T.self): its JSON form cannot be built (\(error))")
        }
        return flatten(json)
    }

    /// `json` flattened to dotted keys, object members in sorted key order.
    public static func flatten(_ json: JSONValue) -> [FlatEntry] {
        var out: [FlatEntry] = []
        visit(json, path: "", into: &out)
        return out
    }

    private static func visit(_ value: JSONValue, path: String, into out: inout [FlatEntry]) {
        switch value {
        case .object(let members):
            for key in members.keys.sorted() {
                visit(members[key]!, path: path.isEmpty ? key : path + "." + key, into: &out)
            }
        case .array(let elements) where elements.isEmpty || elements.contains(where: \.isStringOrContainer):
            for (i, element) in elements.enumerated() {
                visit(element, path: path + "[\(i)]", into: &out)
            }
        default:
            out.append(FlatEntry(key: path, value: value))
        }
    }

    /// Keys that differ between `a` and `b`, in the order A lists them, then keys only in B.
    public static func diff(_ a: [FlatEntry], _ b: [FlatEntry]) -> [KeyChange] {
        let inA = Dictionary(a.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        let inB = Dictionary(b.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        var changes: [KeyChange] = []
        for (key, va) in a.map({ ($0.key, $0.value) }) {
            if let vb = inB[key] {
                if va != vb { changes.append(KeyChange(key: key, kind: .changed, a: va, b: vb)) }
            } else {
                changes.append(KeyChange(key: key, kind: .removed, a: va, b: nil))
            }
        }
        for (key, vb) in b.map({ ($0.key, $0.value) }) where inA[key] == nil {
            changes.append(KeyChange(key: key, kind: .added, a: nil, b: vb))
        }
        return changes
    }
}

extension JSONValue {
    /// True for strings, arrays and objects.
    fileprivate var isStringOrContainer: Bool {
        switch self {
        case .string, .array, .object: return true
        default: return false
        }
    }
}
