import Checkpoint
import Collections
import Engine
import Foundation
import HDF5
import OrderedCollections

/// Everything a run needs to continue bit-exactly after an interruption: model
/// parameters and BatchNorm buffers, optimiser momentum buffers, schedule counters, loader position.
/// Random streams are not stored: by the project rule every random choice derives from
/// `(seed, step)` or `(seed, epoch, position)`, so `step` (and `extra`) suffice to re-derive them.
///
/// `step` is the number of completed optimisation steps: a run resumed from this state continues
/// with step `step + 1`.
///
/// Stored by `Run.saveState` as `state.h5`, an HDF5 file (through `Sources/HDF5`) laid out as:
///
/// ```
/// /  attributes format = "bissl-training-state", format_version = "1.0", step (int64)
/// /array_names     1-D UTF-8 strings, the keys of `arrays` in order
/// /arrays/<i>      float32 [count] for the i-th name (index names: keys may contain '/')
/// /integer_names   1-D UTF-8 strings, the keys of `integers` sorted
/// /integers        int64 [count]
/// /extra           scalar UTF-8 string, `extra` as JSON (sorted keys)
/// ```
/// The file is written to a temporary name in the same folder, flushed and renamed (`AtomicFile`),
/// so a crash leaves the previous state intact.
public struct TrainingState: Equatable, Sendable {
    /// Completed optimisation steps.
    public var step: Int
    /// float32 arrays by name, e.g. `model/backbone/layer1.0.conv1.weight`, `opt/sgd/0.weight`.
    public var arrays: OrderedDictionary<String, [Float]>
    /// int64 values by name, e.g. `model/backbone/bn1.num_batches_tracked`, `sched/counter`.
    public var integers: [String: Int64]
    /// Anything else JSON-representable (loader epoch/position, best validation score, ...).
    public var extra: [String: JSONValue]

    public init(step: Int, arrays: OrderedDictionary<String, [Float]> = [:], integers: [String: Int64] = [:],
                extra: [String: JSONValue] = [:]) {
        self.step = step
        self.arrays = arrays
        self.integers = integers
        self.extra = extra
    }

    /// Value of root attribute `format`.
    public static let formatName = "bissl-training-state"
    static let formatVersion = "1.0"

    // MARK: - file

    /// Writes the state to `url` atomically (temporary in the same folder, `fsync`, rename).
    /// - Throws: `TrainingError.io` naming `url` when it cannot be written (nothing is left behind).
    public func write(to url: URL) throws {
        let extraJSON = try Self.encodeJSON(extra)
        try AtomicFile.write(to: url) { tmp in
            do {
                let file = try HDF5.File.create(tmp.path)
                try file.setAttribute("format", Self.formatName)
                try file.setAttribute("format_version", Self.formatVersion)
                try file.setAttribute("step", Int64(step))
                try file.createStringDataset("array_names", values: Array(arrays.keys))
                let group = try file.createGroup("arrays")
                for (i, values) in arrays.values.enumerated() {
                    let ds = try group.createDataset(String(i), type: .float32, shape: [values.count])
                    try values.withUnsafeBytes { try ds.write($0) }
                }
                let names = integers.keys.sorted()
                try file.createStringDataset("integer_names", values: names)
                let ints = try file.createDataset("integers", type: .int64, shape: [names.count])
                try names.map { integers[$0]!.littleEndian }.withUnsafeBytes { try ints.write($0) }
                try file.createStringDataset("extra", value: extraJSON)
                try file.flush()
                try file.close()
            } catch let error as HDF5Error {
                throw TrainingError.io("cannot write \(url.path): \(error.message.replacingOccurrences(of: tmp.path, with: url.path))")
            }
        }
    }

    /// Reads a state file written by `write(to:)`.
    /// - Throws: `TrainingError.io` when unreadable, `.corrupt` when not a complete training state.
    public static func read(_ url: URL) throws -> TrainingState {
        let file = try open(url)
        do {
            let step = try file.intAttribute("step")
            let names = try file.openDataset("array_names").readStrings()
            let group = try file.openGroup("arrays")
            var arrays = OrderedDictionary<String, [Float]>()
            for (i, name) in names.enumerated() {
                let ds = try group.openDataset(String(i))
                guard ds.elementType == .float32, ds.shape.count == 1 else {
                    throw TrainingError.corrupt("\(url.path): /arrays/\(i) (\(name)) is not a 1-D float32 dataset")
                }
                var values = [Float](repeating: 0, count: ds.count)
                try values.withUnsafeMutableBytes { try ds.read(into: $0) }
                arrays[name] = values
            }
            let intNames = try file.openDataset("integer_names").readStrings()
            let ints = try file.openDataset("integers")
            guard ints.elementType == .int64, ints.count == intNames.count else {
                throw TrainingError.corrupt("\(url.path): /integers does not hold one int64 per name of /integer_names")
            }
            var intValues = [Int64](repeating: 0, count: ints.count)
            try intValues.withUnsafeMutableBytes { try ints.read(into: $0) }
            var integers: [String: Int64] = [:]
            for (name, v) in zip(intNames, intValues) { integers[name] = Int64(littleEndian: v) }
            let extraText = try file.openDataset("extra").readString()
            let extra: [String: JSONValue]
            do {
                extra = try JSONDecoder().decode([String: JSONValue].self, from: Data(extraText.utf8))
            } catch {
                throw TrainingError.corrupt("\(url.path): /extra is not a JSON object")
            }
            return TrainingState(step: Int(step), arrays: arrays, integers: integers, extra: extra)
        } catch let error as HDF5Error {
            throw TrainingError.corrupt("\(url.path): not a complete training state: \(error.message)")
        }
    }

    /// The `step` attribute alone (no arrays read).
    /// - Throws: as `read`.
    public static func storedStep(_ url: URL) throws -> Int {
        let file = try open(url)
        do { return Int(try file.intAttribute("step")) } catch let error as HDF5Error {
            throw TrainingError.corrupt("\(url.path): not a complete training state: \(error.message)")
        }
    }

    private static func open(_ url: URL) throws -> HDF5.File {
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw TrainingError.io("cannot read \(url.path): no such readable file")
        }
        let file: HDF5.File
        do { file = try HDF5.File.open(url.path) } catch let error as HDF5Error {
            throw TrainingError.corrupt("\(url.path): damaged training state: \(error.message)")
        }
        guard (try? file.stringAttribute("format")) == formatName else {
            throw TrainingError.corrupt("\(url.path) is not a bissl training state (no root attribute format = \"\(formatName)\")")
        }
        return file
    }

    static func encodeJSON(_ value: [String: JSONValue]) throws -> String {
        let encoder = JSONEncoder.bissl()
        do { return String(decoding: try encoder.encode(value), as: UTF8.self) } catch {
            throw TrainingError.invalid("cannot encode the training state's extra values as JSON: \(error)")
        }
    }

    // MARK: - helpers

    /// Removes every array and integer whose name starts with `prefix + "/"`.
    public mutating func removeAll(prefix: String) {
        let p = prefix + "/"
        for key in arrays.keys where key.hasPrefix(p) { arrays.removeValue(forKey: key) }
        for key in integers.keys where key.hasPrefix(p) { integers.removeValue(forKey: key) }
    }

    /// The names stored under `prefix + "/"` (arrays and integers), sorted.
    func names(under prefix: String) -> Set<String> {
        let p = prefix + "/"
        return Set(arrays.keys.filter { $0.hasPrefix(p) } + integers.keys.filter { $0.hasPrefix(p) })
    }

    /// The float32 array `name`, checked to hold `count` values.
    /// - Throws: `TrainingError.invalid` ("training state: ... is missing" / "has N values, expected M").
    public func array(_ name: String, count: Int) throws -> [Float] {
        guard let v = arrays[name] else { throw TrainingError.invalid("training state: '\(name)' is missing (state saved by a different configuration?)") }
        guard v.count == count else {
            throw TrainingError.invalid("training state: '\(name)' has \(v.count) values, expected \(count) (state saved by a different configuration?)")
        }
        return v
    }

    /// The integer `name`.
    /// - Throws: `TrainingError.invalid` when missing.
    public func integer(_ name: String) throws -> Int64 {
        guard let v = integers[name] else { throw TrainingError.invalid("training state: '\(name)' is missing (state saved by a different configuration?)") }
        return v
    }

    /// Throws when names under `prefix` other than `expected` are stored.
    func refuseUnexpected(under prefix: String, expected: Set<String>) throws {
        let extra = names(under: prefix).subtracting(expected).sorted()
        if let first = extra.first {
            throw TrainingError.invalid("training state: '\(first)'\(extra.count > 1 ? " and \(extra.count - 1) more" : "") not expected by the current configuration (state saved by a different configuration?)")
        }
    }
}
