import Foundation

/// The decoded and validated JSON header of a safetensors file.
///
/// Format (https://huggingface.co/docs/safetensors, huggingface/safetensors `safetensors/src/tensor.rs`):
/// 8-byte little-endian header size N, N bytes of UTF-8 JSON, then the byte buffer. The JSON object
/// maps each tensor name to `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`, offsets
/// in bytes relative to the start of the buffer; the optional `__metadata__` member maps strings to
/// strings. Validation matches the reference reader (`Metadata::validate`): tensors sorted by offsets
/// must tile the buffer exactly from 0 to its end, each `end - begin == numel * dtype size`.
/// In addition, duplicate names are refused (serde_json would keep the last one silently).
struct SafetensorsHeader {
    struct Entry {
        var name: String
        var dtype: DType
        var shape: [Int]
        /// Byte range `[begin, end)` relative to the start of the buffer after the header.
        var begin: Int
        var end: Int
    }

    /// Tensors in header (file) order.
    var entries: [Entry]
    /// The `__metadata__` member, if present.
    var metadata: [String: String]

    /// The safetensors dtype names bissl reads and writes, and the `DType` each one is.
    static let dtypeByName: [String: DType] = [
        "F64": .float64, "F32": .float32, "F16": .float16, "BF16": .bfloat16,
        "I64": .int64, "I32": .int32, "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
    ]

    /// Dtypes the safetensors format defines (safetensors 0.8) that bissl does not handle: refused as
    /// unsupported rather than as damage. Any other name is not a safetensors dtype at all.
    static let knownUnsupportedNames: Set<String> = [
        "F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
        "U16", "U32", "U64", "C64",
    ]

    /// The safetensors name of a `DType` (`.bfloat16` -> `BF16`).
    static func name(of dtype: DType) -> String {
        switch dtype {
        case .float64: return "F64"
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        }
    }

    /// The reference reader refuses headers above 100 MB (`MAX_HEADER_SIZE`).
    static let maxHeaderSize = 100_000_000

    /// The most tensors one file may hold: 100,000 (a ResNet-152 has 930 and a large language model's
    /// shard a few thousand). Counted while the header is parsed, so a 100 MB header of a million
    /// empty tensors is refused before they are made; reading costs about 1 KB per tensor besides
    /// the file (README, "Hostile input: limits and the HDF5 reader process"). Writers refuse more too.
    static let maxTensors = 100_000

    /// Decodes and validates the header JSON against a buffer of `bufferSize` bytes.
    /// - Parameter file: the file name used in messages.
    /// - Throws: `CheckpointError.corrupt` for invalid UTF-8/JSON, wrong member types, duplicate names,
    ///   size mismatches and offsets that do not tile the buffer (naming the tensor);
    ///   `CheckpointError.unsupported` for a dtype bissl does not handle (F8_*, U16, C64, ...) or more
    ///   than `maxTensors` tensors.
    static func decode(_ json: UnsafeRawBufferPointer, bufferSize: Int, file: String) throws -> SafetensorsHeader {
        func corrupt(_ m: String) -> CheckpointError { .corrupt("safetensors file \(file): \(m)") }

        guard String(validating: json, as: UTF8.self) != nil else { throw corrupt("the header is not valid UTF-8") }
        let root: SafetensorsJSON
        let tooMany = CheckpointError.unsupported("safetensors file \(file): the header names more than \(maxTensors) tensors (bissl reads at most \(maxTensors) from one file)")
        do {
            root = try SafetensorsJSON.parse(json, maxMembers: maxTensors + 1)   // + __metadata__
        } catch let e as SafetensorsJSON.ParseError {
            throw corrupt("the header is not valid JSON (\(e.reason) at byte \(e.offset) of the header)")
        } catch is SafetensorsJSON.TooManyMembers {
            throw tooMany
        }
        guard case .object(let members) = root else { throw corrupt("the header is \(root.kind), not a JSON object") }

        var header = SafetensorsHeader(entries: [], metadata: [:])
        var seen = Set<String>()
        var sawMetadata = false
        for (name, value) in members {
            if name == "__metadata__" {
                guard !sawMetadata else { throw corrupt("'__metadata__' appears twice in the header") }
                sawMetadata = true
                guard case .object(let pairs) = value else { throw corrupt("'__metadata__' is \(value.kind), not an object of strings") }
                for (key, v) in pairs {
                    guard case .string(let s) = v else { throw corrupt("'__metadata__' value of '\(key)' is \(v.kind), not a string") }
                    guard header.metadata.updateValue(s, forKey: key) == nil else {
                        throw corrupt("'__metadata__' key '\(key)' appears twice")
                    }
                }
                continue
            }
            guard seen.insert(name).inserted else { throw corrupt("tensor '\(name)' appears twice in the header") }
            header.entries.append(try entry(name, value, file: file, corrupt))
        }
        guard header.entries.count <= maxTensors else { throw tooMany }
        try validateLayout(header.entries, bufferSize: bufferSize, corrupt)
        return header
    }

    private static func entry(_ name: String, _ value: SafetensorsJSON, file: String,
                              _ corrupt: (String) -> CheckpointError) throws -> Entry {
        guard case .object(let fields) = value else { throw corrupt("tensor '\(name)' is \(value.kind), not an object") }
        func field(_ key: String) throws -> SafetensorsJSON {
            guard let v = fields.first(where: { $0.0 == key })?.1 else { throw corrupt("tensor '\(name)' has no '\(key)'") }
            return v
        }
        guard case .string(let dtypeName) = try field("dtype") else { throw corrupt("tensor '\(name)' has a 'dtype' that is not a string") }
        guard let dtype = dtypeByName[dtypeName] else {
            guard knownUnsupportedNames.contains(dtypeName) else {
                throw corrupt("tensor '\(name)' has dtype '\(dtypeName)', which is not a safetensors dtype")
            }
            let supported = dtypeByName.keys.sorted().joined(separator: " ")
            throw CheckpointError.unsupported(
                "safetensors file \(file): tensor '\(name)' has dtype \(dtypeName), which bissl does not support (supported: \(supported))")
        }
        guard case .array(let dims) = try field("shape") else { throw corrupt("tensor '\(name)' has a 'shape' that is not an array") }
        let shape = try dims.map { d -> Int in
            guard let n = d.nonNegativeInt else { throw corrupt("tensor '\(name)' has a shape entry that is not a non-negative integer") }
            return n
        }
        guard case .array(let offsets) = try field("data_offsets"), offsets.count == 2,
              let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt else {
            throw corrupt("tensor '\(name)' needs 'data_offsets' of two non-negative integers [begin, end]")
        }
        guard end >= begin else { throw corrupt("tensor '\(name)' has data_offsets [\(begin), \(end)] that end before they begin") }
        guard let bytes = dtype.byteCount(shape: shape) else {
            throw corrupt("tensor '\(name)' has a shape \(shape) too large to address")
        }
        guard end - begin == bytes else {
            throw corrupt("tensor '\(name)' (\(dtypeName) \(shape)) needs \(bytes) bytes but its data_offsets [\(begin), \(end)] span \(end - begin)")
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// Tensors sorted by offsets must tile `[0, bufferSize)` without holes or overlaps (the reference
    /// reader's `validate` plus its `MetadataIncompleteBuffer` check). Empty tensors (`[b, b]`) take no
    /// room and fit anywhere between their neighbours.
    private static func validateLayout(_ entries: [Entry], bufferSize: Int,
                                       _ corrupt: (String) -> CheckpointError) throws {
        let sorted = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var position = 0
        var previous: String?
        for e in sorted {
            if e.end > bufferSize {
                throw corrupt("tensor '\(e.name)' has data_offsets [\(e.begin), \(e.end)] beyond the \(bufferSize)-byte data buffer")
            }
            if e.begin < position {
                throw corrupt("tensor '\(e.name)' at [\(e.begin), \(e.end)] overlaps tensor '\(previous ?? "")', which ends at \(position)")
            }
            if e.begin > position {
                let after = previous.map { "after tensor '\($0)' " } ?? "at the start of the buffer "
                throw corrupt("\(e.begin - position) unused bytes \(after)before tensor '\(e.name)' (offsets \(position)..<\(e.begin))")
            }
            position = e.end
            if e.end > e.begin { previous = e.name }
        }
        if position != bufferSize {
            let after = previous.map { "after tensor '\($0)'" } ?? "not claimed by any tensor"
            throw corrupt("the data buffer has \(bufferSize - position) bytes \(after) (tensors cover \(position) of \(bufferSize) bytes)")
        }
    }

    /// Serializes a header the way the reference writer does: `__metadata__` first (when not empty),
    /// then tensors in the given order, compact JSON, padded with spaces to a multiple of 8 bytes.
    static func encode(_ entries: [Entry], metadata: [String: String]) -> Data {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(SafetensorsJSON.quote($0)):\(SafetensorsJSON.quote(metadata[$0]!))" }
                .joined(separator: ",")
            json += "}"
            first = false
        }
        for e in entries {
            if !first { json += "," }
            first = false
            json += SafetensorsJSON.quote(e.name)
            json += ":{\"dtype\":\"\(name(of: e.dtype))\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],"
            json += "\"data_offsets\":[\(e.begin),\(e.end)]}"
        }
        json += "}"
        var data = Data(json.utf8)
        let extra = (8 - data.count % 8) % 8
        data.append(contentsOf: [UInt8](repeating: 0x20, count: extra))
        return data
    }
}
