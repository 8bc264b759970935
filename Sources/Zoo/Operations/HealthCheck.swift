import Checkpoint

/// Health warnings for a stored checkpoint (`bissl verify`, `bissl show`): BatchNorm layers that make features constant or undefined, and
/// non-finite weights.
public enum HealthCheck {
    /// Warnings, one line each, prefixed with the component:
    /// - a BatchNorm `weight` (a `.weight` with a sibling `.running_var`) whose values are all zero:
    ///   in eval mode `y = weight * x_hat + bias`, so the layer outputs its bias whatever the input
    ///   (`torch.nn.BatchNorm2d`), i.e. constant features;
    /// - `running_var` / `running_mean` with zero, negative, infinite or NaN values (`BatchNormCheck`);
    /// - any other floating-point tensor holding NaN or infinite values.
    public static func warnings(_ checkpoint: Checkpoint) -> [String] { warnings(checkpoint, scanned: [:]) }

    /// `warnings(_:)` with the scans of some tensors done already (`scanKey` -> scan; a pull scans
    /// float32 tensors while it hashes them): those tensors are not read again.
    static func warnings(_ checkpoint: Checkpoint, scanned: [String: ValueScan]) -> [String] {
        var out: [String] = []
        for (component, dict) in checkpoint.components {
            var zeroBN: [String] = []
            for (key, tensor) in dict where scans(key: key, dtype: tensor.dtype) && tensor.count > 0 {
                let scan = scanned[scanKey(component, key)] ?? ValueScan(tensor)
                if key.hasSuffix(".weight"), dict[String(key.dropLast("weight".count)) + "running_var"] != nil, scan.allZero {
                    zeroBN.append(key)
                }
                let nonFinite = (nan: scan.nan, inf: scan.inf)
                if nonFinite.nan + nonFinite.inf > 0 {
                    out.append("\(component) \(key): \(nonFinite.nan) NaN, \(nonFinite.inf) inf of \(tensor.count) values (non-finite weights)")
                }
            }
            if !zeroBN.isEmpty {
                let shown = zeroBN.prefix(3).joined(separator: ", ") + (zeroBN.count > 3 ? ", ..." : "")
                out.append("\(component): \(zeroBN.count) BatchNorm weight tensor\(zeroBN.count == 1 ? " is" : "s are") all zero (\(shown)): degenerate BatchNorm, constant features")
            }
            out += BatchNormCheck.warnings(dict, component: component)
        }
        return out
    }

    /// True for the tensors `warnings` scans for zero, NaN and infinite values (all floating-point
    /// tensors but BatchNorm running statistics, which `BatchNormCheck` examines).
    static func scans(key: String, dtype: DType) -> Bool {
        dtype.isFloatingPoint && !key.hasSuffix("running_var") && !key.hasSuffix("running_mean")
    }

    /// The key of a tensor in `warnings(_:scanned:)`.
    static func scanKey(_ component: String, _ key: String) -> String { component + "\u{0}" + key }
}

/// Zero, NaN and infinite values of a floating-point tensor, counted in one pass. float32 is scanned
/// as raw IEEE 754 bit patterns (exponent all ones: infinite when the mantissa is 0, else NaN; zero
/// when every bit but the sign is 0), without widening; other dtypes through `Tensor.doubles()`.
struct ValueScan {
    var allZero = true
    var nan = 0
    var inf = 0

    init(_ tensor: Tensor) {
        guard tensor.dtype == .float32 else {
            for x in tensor.doubles() {
                if x != 0 { allZero = false }
                if x.isNaN { nan += 1 } else if x.isInfinite { inf += 1 }
            }
            return
        }
        var pieces = Float32Pieces()
        tensor.data.withUnsafeBytes { pieces.add($0) }
        self = pieces.scan
    }

    init(allZero: Bool, nan: Int, inf: Int) {
        self.allZero = allZero
        self.nan = nan
        self.inf = inf
    }

    /// The scan of a float32 tensor from its little-endian bytes given piece by piece, in order,
    /// split anywhere (a download hashing them as they arrive).
    struct Float32Pieces {
        private var nonZero: UInt32 = 0
        private var nan = 0
        private var inf = 0
        /// The bytes of a value split between two pieces, and how many of its 4 are there.
        private var carry: UInt32 = 0
        private var carried = 0

        mutating func add(_ piece: UnsafeRawBufferPointer) {
            var i = 0
            if carried > 0 {
                while carried < 4 && i < piece.count {
                    carry |= UInt32(piece[i]) << (8 * carried)
                    carried += 1
                    i += 1
                }
                guard carried == 4 else { return }
                withUnsafeBytes(of: carry.littleEndian) { count($0) }   // the value split between pieces
                carry = 0
                carried = 0
            }
            let whole = (piece.count - i) / 4 * 4
            count(UnsafeRawBufferPointer(rebasing: piece[i..<i + whole]))
            for byte in piece[(i + whole)...] {
                carry |= UInt32(byte) << (8 * carried)
                carried += 1
            }
        }

        /// Counts whole values: one cheap pass (any non-zero bit but the sign, any exponent all
        /// ones), a second only when some exponent is all ones.
        private mutating func count(_ raw: UnsafeRawBufferPointer) {
            let n = raw.count / 4
            var special = 0   // values with exponent all ones
            for i in 0..<n {
                let bits = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                nonZero |= bits & 0x7FFF_FFFF
                special &+= (bits & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0
            }
            guard special > 0 else { return }
            for i in 0..<n {
                let bits = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                guard bits & 0x7F80_0000 == 0x7F80_0000 else { continue }
                if bits & 0x007F_FFFF == 0 { inf += 1 } else { nan += 1 }
            }
        }

        /// The scan of the values given (bytes of a value not yet complete are left out).
        var scan: ValueScan { ValueScan(allZero: nonZero == 0, nan: nan, inf: inf) }
    }
}

/// Checks a decoded provenance against the constraints of schemas/provenance.schema.json that its
/// Swift type does not already enforce (enums, SHA-256 and time patterns, non-empty strings).
public enum ProvenanceCheck {
    public static let stages: Set<String> = ["imported", "pretext", "bissl", "finetune", "probe"]
    public static let relations: Set<String> = ["imported-from", "pretrained-from", "aligned-from", "finetuned-from", "probed-from"]
    public static let sourceFormats: Set<String> = ["pth", "safetensors", "npz", "h5"]

    /// One line per violation, naming the JSON path (`parents[0].relation`); empty when valid.
    public static func violations(_ p: Provenance) -> [String] {
        var out: [String] = []
        if !stages.contains(p.stage) { out.append("stage '\(p.stage)' is not one of \(stages.sorted().joined(separator: ", "))") }
        for (i, parent) in p.parents.enumerated() {
            if parent.id.isEmpty { out.append("parents[\(i)].id is empty") }
            if !relations.contains(parent.relation) { out.append("parents[\(i)].relation '\(parent.relation)' is not one of \(relations.sorted().joined(separator: ", "))") }
        }
        if let s = p.source {
            if s.fileName.isEmpty { out.append("source.fileName is empty") }
            if !isSHA256(s.sha256) { out.append("source.sha256 '\(s.sha256)' is not 64 lowercase hex digits") }
            if !sourceFormats.contains(s.format) { out.append("source.format '\(s.format)' is not one of \(sourceFormats.sorted().joined(separator: ", "))") }
            if s.container.isEmpty { out.append("source.container is empty") }
        }
        for (i, d) in p.datasets.enumerated() {
            if d.role.isEmpty { out.append("datasets[\(i)].role is empty") }
            if d.uri.isEmpty { out.append("datasets[\(i)].uri is empty") }
            if !isSHA256(d.fingerprint) { out.append("datasets[\(i)].fingerprint is not 64 lowercase hex digits") }
        }
        if p.tool.name.isEmpty { out.append("tool.name is empty") }
        if p.tool.version.isEmpty { out.append("tool.version is empty") }
        for (field, value) in [("startedAt", p.startedAt), ("endedAt", p.endedAt)] {
            if let value, !isTime(value) { out.append("\(field) '\(value)' is not an ISO 8601 UTC time like 2026-11-29T10:24:09Z") }
        }
        return out
    }

    static func isSHA256(_ s: String) -> Bool { ZooLayout.isFullID(s) }

    /// `YYYY-MM-DDTHH:MM:SS(.fraction)?Z`, the schema's `time` pattern.
    static func isTime(_ s: String) -> Bool {
        let b = Array(s.utf8)
        func digits(_ r: Range<Int>) -> Bool { r.upperBound <= b.count && r.allSatisfy { (0x30...0x39).contains(b[$0]) } }
        guard b.count >= 20, digits(0..<4), b[4] == 0x2D, digits(5..<7), b[7] == 0x2D, digits(8..<10), b[10] == 0x54,
              digits(11..<13), b[13] == 0x3A, digits(14..<16), b[16] == 0x3A, digits(17..<19), b.last == 0x5A else { return false }
        if b.count == 20 { return true }
        return b[19] == 0x2E && b.count > 21 && digits(20..<(b.count - 1))
    }
}
