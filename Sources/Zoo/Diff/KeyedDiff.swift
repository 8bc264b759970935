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
    /// Where a leaf sits inside an element of a flattened array: the array's key (`source.rules`,
    /// `parents`) and the element's index. The outermost such array counts.
    public struct Element: Equatable, Sendable {
        public var array: String
        public var index: Int
        public init(array: String, index: Int) {
            self.array = array
            self.index = index
        }
    }

    public var key: String
    public var value: JSONValue
    /// Set for a leaf inside an array element (`source.rules[2]`, `parents[0].id`); nil otherwise.
    public var element: Element?
    public init(key: String, value: JSONValue, element: Element? = nil) {
        self.key = key
        self.value = value
        self.element = element
    }
}

/// Flattens JSON documents to dotted keys and compares them key by key.
///
/// Flattening: an object member `k` of a value at path `p` becomes `p.k`; a non-empty array of
/// numbers, booleans and nulls is one leaf compared as a whole (`dims`, `layers`); an array holding
/// strings, arrays or objects contributes `p[i]` per element (`source.rules[2]`, `commandLine[3]`,
/// `parents[0].id`). Empty objects and empty arrays contribute nothing, so an absent optional field,
/// `[]` and `{}` compare equal.
///
/// Comparison: leaves outside arrays by key. The elements of an array are aligned by content (a
/// longest common subsequence of equal elements, as `diff` aligns lines), so an element present in
/// both lists shows no change wherever it sits: a rule inserted before others shows as one added
/// line, not as every later rule changed. Between two aligned elements, objects (`parents[i]`) are
/// paired in order when both sides hold as many, and compared key by key (`changed
/// parents[0].relation`); strings (`source.rules[i]`) and unpaired elements are removed (A's index)
/// and added (B's index). Arrays named in `unordered` are sets by meaning (provenance's
/// `source.droppedKeys`: their order is the source file's dict order): they are compared as
/// multisets, each element present more often in A than in B removed, each one present more often
/// in B added, in linear time whatever the shuffle.
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

    private static func visit(_ value: JSONValue, path: String, element: FlatEntry.Element? = nil, into out: inout [FlatEntry]) {
        switch value {
        case .object(let members):
            for key in members.keys.sorted() {
                visit(members[key]!, path: path.isEmpty ? key : path + "." + key, element: element, into: &out)
            }
        case .array(let elements) where elements.isEmpty || elements.contains(where: \.isStringOrContainer):
            for (i, item) in elements.enumerated() {
                visit(item, path: path + "[\(i)]", element: element ?? .init(array: path, index: i), into: &out)
            }
        default:
            out.append(FlatEntry(key: path, value: value, element: element))
        }
    }

    /// Keys that differ between `a` and `b`: removed and changed ones in the order A lists them, then
    /// added ones in the order B lists them. Array elements are aligned by content (see the type);
    /// those of the arrays named in `unordered` (flattened keys such as `source.droppedKeys`) are
    /// matched as multisets.
    public static func diff(_ a: [FlatEntry], _ b: [FlatEntry], unordered: Set<String> = []) -> [KeyChange] {
        // Each change with the position in A (removed, changed) or B (added) of the leaf it reports.
        var fromA: [(Int, KeyChange)] = []
        var fromB: [(Int, KeyChange)] = []
        let plainA = a.enumerated().filter { $0.element.element == nil }
        let plainB = b.enumerated().filter { $0.element.element == nil }
        let inA = Dictionary(plainA.map { ($0.element.key, $0.element.value) }, uniquingKeysWith: { first, _ in first })
        let inB = Dictionary(plainB.map { ($0.element.key, $0.element.value) }, uniquingKeysWith: { first, _ in first })
        for (position, e) in plainA {
            if let vb = inB[e.key] {
                if e.value != vb { fromA.append((position, KeyChange(key: e.key, kind: .changed, a: e.value, b: vb))) }
            } else {
                fromA.append((position, KeyChange(key: e.key, kind: .removed, a: e.value, b: nil)))
            }
        }
        for (position, e) in plainB where inA[e.key] == nil {
            fromB.append((position, KeyChange(key: e.key, kind: .added, a: nil, b: e.value)))
        }

        let arraysA = elements(a), arraysB = elements(b)
        var arrays = arraysA.map(\.array)
        for x in arraysB.map(\.array) where !arrays.contains(x) { arrays.append(x) }
        for array in arrays {
            let ea = arraysA.first { $0.array == array }?.items ?? []
            let eb = arraysB.first { $0.array == array }?.items ?? []
            func removed(_ e: ArrayItem) { for l in e.leaves { fromA.append((l.position, KeyChange(key: l.key, kind: .removed, a: l.value, b: nil))) } }
            func added(_ e: ArrayItem) { for l in e.leaves { fromB.append((l.position, KeyChange(key: l.key, kind: .added, a: nil, b: l.value))) } }
            if unordered.contains(array) {
                // A multiset: each element matched to any equal one of the other side.
                func surplus(_ x: [ArrayItem], over y: [ArrayItem]) -> [ArrayItem] {
                    var available: [String: Int] = [:]
                    for e in y { available[e.contentKey, default: 0] += 1 }
                    return x.filter { e in
                        let key = e.contentKey
                        guard let n = available[key], n > 0 else { return true }
                        available[key] = n - 1
                        return false
                    }
                }
                surplus(ea, over: eb).forEach(removed)
                surplus(eb, over: ea).forEach(added)
                continue
            }
            var i = 0, j = 0
            for (mi, mj) in commonSubsequence(ea, eb) + [(ea.count, eb.count)] {
                let gapA = ea[i..<mi], gapB = eb[j..<mj]
                if gapA.count == gapB.count, !gapA.isEmpty, (gapA + gapB).allSatisfy(\.isObject) {
                    for (x, y) in zip(gapA, gapB) {
                        for c in diff(x.flat, y.flat) {
                            // Keys named as A names them; added ones as B does.
                            let position: Int? = c.kind == .added ? nil : x.leaves.first(where: { $0.rest == c.key })?.position
                            if let position { fromA.append((position, KeyChange(key: x.prefix + c.key, kind: c.kind, a: c.a, b: c.b))) }
                            else if let l = y.leaves.first(where: { $0.rest == c.key }) { fromB.append((l.position, KeyChange(key: y.prefix + c.key, kind: c.kind, a: c.a, b: c.b))) }
                        }
                    }
                } else {
                    gapA.forEach(removed)
                    gapB.forEach(added)
                }
                i = mi + 1
                j = mj + 1
            }
        }
        return fromA.sorted { $0.0 < $1.0 }.map(\.1) + fromB.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// One element of a flattened array: its leaves (key, the key's part after `array[i]`, value,
    /// position in the flat list).
    struct ArrayItem: Equatable {
        struct Leaf: Equatable {
            var key: String
            var rest: String
            var value: JSONValue
            var position: Int
        }
        var prefix: String
        var leaves: [Leaf]
        /// Equal content: the same leaves below the element, wherever the element sits.
        static func == (x: ArrayItem, y: ArrayItem) -> Bool {
            guard x.leaves.count == y.leaves.count else { return false }
            for (l, r) in zip(x.leaves, y.leaves) where l.rest != r.rest || l.value != r.value { return false }
            return true
        }
        /// The element's content as one string (equal for equal elements), for hashing.
        var contentKey: String {
            leaves.map { leaf -> String in
                if case .string(let text) = leaf.value { return leaf.rest + "\u{0}s" + text }
                return leaf.rest + "\u{0}v\(leaf.value)"
            }.joined(separator: "\u{1}")
        }
        /// An object or array element (its leaves have keys below it), not a string.
        var isObject: Bool { leaves.allSatisfy { !$0.rest.isEmpty } }
        /// The element's leaves as a flat document of their own, keyed below it.
        var flat: [FlatEntry] {
            leaves.map { FlatEntry(key: $0.rest, value: $0.value) }
        }
    }

    /// The array elements of `flat`, grouped by array in order of first appearance.
    static func elements(_ flat: [FlatEntry]) -> [(array: String, items: [ArrayItem])] {
        var out: [(array: String, items: [ArrayItem])] = []
        for (position, e) in flat.enumerated() {
            guard let el = e.element else { continue }
            let prefix = el.array + "[\(el.index)]"
            let leaf = ArrayItem.Leaf(key: e.key, rest: String(e.key.dropFirst(prefix.count)), value: e.value, position: position)
            if out.last?.array != el.array { out.append((el.array, [])) }
            if out[out.count - 1].items.last?.prefix == prefix {
                out[out.count - 1].items[out[out.count - 1].items.count - 1].leaves.append(leaf)
            } else {
                out[out.count - 1].items.append(ArrayItem(prefix: prefix, leaves: [leaf]))
            }
        }
        return out
    }

    /// Index pairs of a common subsequence of `x` and `y`, increasing in both: equal leading and
    /// trailing elements, and between them a longest common subsequence (dynamic programming) when
    /// the middle parts' sizes multiply to at most `exactLimit`, else a greedy one (each element of
    /// `x` in order matched to the next equal element of `y`), so time and memory stay bounded for
    /// lists of any length.
    static func commonSubsequence(_ x: [ArrayItem], _ y: [ArrayItem], exactLimit: Int = 1 << 22) -> [(Int, Int)] {
        var head = 0
        while head < x.count, head < y.count, x[head] == y[head] { head += 1 }
        var tail = 0
        while tail < x.count - head, tail < y.count - head, x[x.count - 1 - tail] == y[y.count - 1 - tail] { tail += 1 }
        let n = x.count - head - tail, m = y.count - head - tail
        var pairs: [(Int, Int)] = (0..<head).map { ($0, $0) }
        if n > 0 && m > 0 {
            if n.multipliedReportingOverflow(by: m).partialValue <= exactLimit && n < exactLimit && m < exactLimit {
                var length = [[Int32]](repeating: [Int32](repeating: 0, count: m + 1), count: n + 1)
                for i in stride(from: n - 1, through: 0, by: -1) {
                    for j in stride(from: m - 1, through: 0, by: -1) {
                        length[i][j] = x[head + i] == y[head + j] ? length[i + 1][j + 1] + 1 : max(length[i + 1][j], length[i][j + 1])
                    }
                }
                var i = 0, j = 0
                while i < n && j < m {
                    if x[head + i] == y[head + j] { pairs.append((head + i, head + j)); i += 1; j += 1 }
                    else if length[i + 1][j] >= length[i][j + 1] { i += 1 }
                    else { j += 1 }
                }
            } else {
                var where_: [String: [Int]] = [:]
                for j in (head..<(head + m)).reversed() { where_[y[j].contentKey, default: []].append(j) }
                var last = head - 1
                for i in head..<(head + n) {
                    let key = x[i].contentKey
                    // Indices of equal elements in y, largest first: drop those at or before `last`.
                    while let j = where_[key]?.last, j <= last { where_[key]!.removeLast() }
                    if let j = where_[key]?.popLast() { pairs.append((i, j)); last = j }
                }
            }
        }
        pairs += (0..<tail).map { (x.count - tail + $0, y.count - tail + $0) }
        return pairs
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
