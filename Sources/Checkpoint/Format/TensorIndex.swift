import Collections
import Foundation

/// The tensor index of a checkpoint file (schemas/checkpoint-v1.md, "Tensor index"): the content id,
/// architecture record, provenance, and every tensor's component, key, dtype, shape, file offset and
/// byte count, encoded in the first bytes of the file (the HDF5 user block, which HDF5 reserves for
/// applications and never reads). bissl writes it with every checkpoint; HDF5 readers (h5py) ignore it.
///
/// A zoo object whose content id was verified and whose file facts are unchanged (schemas/catalog.md,
/// "Trusted reads") is read through its index alone: one small read, then each tensor a view of the
/// mapped file, with no HDF5 metadata walk. Every HDF5 read of a zoo object checks its index against
/// its HDF5 metadata (`CheckpointReader(_:zooObject:)`, `UntrustedCheckpointFile.read(_:reader:zooObject:)`),
/// so a trusted object's index is one that agreed. `ContentID.compute(_:bytes:)` hashes the tensors an index describes (a download can
/// be hashed from its own bytes).
///
/// Decoding trusts nothing: every count, length and extent is checked against the bytes at hand and
/// the file's size before use, and extents may not overlap unless they are the same tensor (aliases).
public struct TensorIndex: Equatable, Sendable {
    /// One state-dict name: aliases (hard-linked names, schemas/checkpoint-v1.md "Aliases") have
    /// their own entry with the same offset, dtype and shape as the first name.
    public struct Entry: Equatable, Sendable {
        public var component: String
        public var key: String
        public var dtype: DType
        /// PyTorch shape; `[]` for a 0-dim tensor.
        public var shape: [Int]
        /// Bytes from the start of the file (user block included); 0 for an empty tensor.
        public var offset: UInt64
        /// `shape.product * dtype.size`.
        public var byteCount: Int

        public init(component: String, key: String, dtype: DType, shape: [Int], offset: UInt64, byteCount: Int) {
            self.component = component
            self.key = key
            self.dtype = dtype
            self.shape = shape
            self.offset = offset
            self.byteCount = byteCount
        }
    }

    /// A metric history dataset (`/metric_history/<m>`): `count` float64 little-endian values at `offset`.
    public struct History: Equatable, Sendable {
        public var metric: String
        /// Bytes from the start of the file; 0 for an empty history.
        public var offset: UInt64
        public var count: Int

        public init(metric: String, offset: UInt64, count: Int) {
            self.metric = metric
            self.offset = offset
            self.count = count
        }
    }

    /// The root attribute `content_id`.
    public var contentID: String
    public var architecture: Architecture?
    /// The `/provenance` document, byte for byte.
    public var provenanceJSON: String
    /// Component names in `/components` order.
    public var components: [String]
    /// Every name, component by component in `components` order, keys in `/keys/<c>` order.
    public var tensors: [Entry]
    /// Ascending by the UTF-8 bytes of the metric name.
    public var histories: [History]

    public init(contentID: String, architecture: Architecture?, provenanceJSON: String, components: [String],
                tensors: [Entry], histories: [History]) {
        self.contentID = contentID
        self.architecture = architecture
        self.provenanceJSON = provenanceJSON
        self.components = components
        self.tensors = tensors
        self.histories = histories
    }

    /// Tag opening the index (`str` encoding), fixed for format v1.
    static let tag = "bissl-tensor-index/v1"
    /// `str(tag)` then `u64(L)`: the bytes before the payload.
    static let headerCount = 8 + tag.utf8.count + 8
    /// Payloads larger than this are refused before anything is allocated (a ResNet-50's is about 30 KB).
    static let maxPayload = 1 << 30

    // MARK: - reading

    /// Bytes from the start of the file the index occupies (header and payload), when `head` (the
    /// file's first bytes, at least `headerCount` of them) opens with the index's tag; nil when it
    /// does not (a file written by another tool, or by bissl before the index existed).
    public static func blockLength(_ head: UnsafeRawBufferPointer) -> Int? {
        guard head.count >= headerCount else { return nil }
        var cursor = Cursor(head.prefix(headerCount), fileName: "")
        guard (try? cursor.bytes()) == Array(tag.utf8), let length = try? cursor.u64(), length <= UInt64(maxPayload) else { return nil }
        return headerCount + Int(length)
    }

    /// The index of the file open at `descriptor` (`fileSize` bytes, as `fstat` gave), nil when the
    /// file has none.
    /// - Throws: `CheckpointError.corrupt` naming `fileName` when the index is malformed or claims
    ///   bytes outside the file; `.io` when the file cannot be read.
    public static func read(descriptor: Int32, fileSize: Int64, fileName: String) throws -> TensorIndex? {
        var head = [UInt8](repeating: 0, count: min(Int(max(fileSize, 0)), 64 << 10))
        try preadFully(descriptor, &head, fileName: fileName)
        guard let length = head.withUnsafeBytes({ blockLength($0) }) else { return nil }
        guard Int64(length) <= fileSize else {
            throw CheckpointError.corrupt("\(fileName): the tensor index claims \(length) bytes, more than the \(fileSize)-byte file holds")
        }
        if length > head.count {
            head = [UInt8](repeating: 0, count: length)
            try preadFully(descriptor, &head, fileName: fileName)
        }
        return try head.withUnsafeBytes { try decode(UnsafeRawBufferPointer(rebasing: $0[..<length]), fileSize: fileSize, fileName: fileName) }
    }

    /// Decodes an index from the file's first bytes (`block` must hold all `blockLength` of them;
    /// more are ignored); nil when `block` does not open with the index's tag.
    /// - Throws: `CheckpointError.corrupt` as `read` does.
    public static func decode(_ block: UnsafeRawBufferPointer, fileSize: Int64, fileName: String) throws -> TensorIndex? {
        guard let length = blockLength(block) else { return nil }
        func corrupt(_ what: String) -> CheckpointError { .corrupt("\(fileName): malformed tensor index (\(what))") }
        guard block.count >= length else { throw corrupt("\(length) bytes claimed, \(block.count) given") }
        guard Int64(length) <= fileSize else { throw corrupt("larger than the file") }
        var c = Cursor(UnsafeRawBufferPointer(rebasing: block[headerCount..<length]), fileName: fileName)
        let contentID = try c.string()
        guard contentID.utf8.count == 64, contentID.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw corrupt("content id is not 64 lowercase hex digits")
        }
        let architecture = try c.architecture()
        let provenanceJSON = try c.string()
        let componentCount = try c.count(minimumBytesEach: 16)
        var components: [String] = []
        var tensors: [Entry] = []
        var seenComponents = Set<String>()
        for _ in 0..<componentCount {
            let component = try c.name()
            guard seenComponents.insert(component).inserted else { throw corrupt("component \(component) twice") }
            components.append(component)
            var seenKeys = Set<String>()
            for _ in 0..<(try c.count(minimumBytesEach: 40)) {
                let key = try c.name()
                guard seenKeys.insert(key).inserted else { throw corrupt("key \(key) twice in \(component)") }
                let dtypeName = try c.string()
                guard let dtype = DType(rawValue: dtypeName) else { throw corrupt("unknown dtype \(dtypeName.debugDescription)") }
                let ndim = try c.u64()
                guard ndim <= 32 else { throw corrupt("\(ndim) dimensions") }
                var shape: [Int] = []
                for _ in 0..<ndim { shape.append(try c.int()) }
                let offset = try c.u64()
                let byteCount = try c.int()
                guard dtype.byteCount(shape: shape) == byteCount else { throw corrupt("\(component)/\(key): \(byteCount) bytes for shape \(shape)") }
                tensors.append(Entry(component: component, key: key, dtype: dtype, shape: shape, offset: offset, byteCount: byteCount))
            }
        }
        var histories: [History] = []
        for _ in 0..<(try c.count(minimumBytesEach: 24)) {
            let metric = try c.name()
            if let last = histories.last, !Array(last.metric.utf8).lexicographicallyPrecedes(Array(metric.utf8)) {
                throw corrupt("metric histories out of order")
            }
            let offset = try c.u64()
            let count = try c.int()
            guard count.multipliedReportingOverflow(by: 8).overflow == false else { throw corrupt("history \(metric) too long") }
            histories.append(History(metric: metric, offset: offset, count: count))
        }
        guard c.isAtEnd else { throw corrupt("\(c.remaining) bytes after the last record") }

        // Extents: inside the file, after the index, disjoint unless one tensor's (aliases).
        var extents: [(offset: UInt64, count: Int, tensor: Int?)] = []
        for (i, entry) in tensors.enumerated() { extents.append((entry.offset, entry.byteCount, i)) }
        for history in histories { extents.append((history.offset, history.count * 8, nil)) }
        for extent in extents {
            guard extent.count > 0 else {
                guard extent.offset == 0 else { throw corrupt("an empty extent at offset \(extent.offset)") }
                continue
            }
            let (end, overflow) = extent.offset.addingReportingOverflow(UInt64(extent.count))
            guard !overflow, extent.offset >= UInt64(length), end <= UInt64(fileSize) else {
                throw corrupt("\(extent.count) bytes at offset \(extent.offset) lie outside the file's data")
            }
        }
        let sorted = extents.filter { $0.count > 0 }.sorted { ($0.offset, $0.count) < ($1.offset, $1.count) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.offset < a.offset + UInt64(a.count) {
            guard b.offset == a.offset, b.count == a.count, let i = a.tensor, let j = b.tensor,
                  tensors[i].dtype == tensors[j].dtype, tensors[i].shape == tensors[j].shape else {
                throw corrupt("overlapping extents at offset \(b.offset)")
            }
        }
        return TensorIndex(contentID: contentID, architecture: architecture, provenanceJSON: provenanceJSON,
                           components: components, tensors: tensors, histories: histories)
    }

    /// Later name -> first name of entries sharing one extent (flat state-dict naming, as
    /// `Checkpoint.aliases`).
    public var aliases: [String: String] {
        var first: [UInt64: String] = [:]
        var aliases: [String: String] = [:]
        for entry in tensors where entry.byteCount > 0 {
            let flat = Self.flatName(entry)
            if let name = first[entry.offset] {
                if name != flat { aliases[flat] = name }
            } else {
                first[entry.offset] = flat
            }
        }
        return aliases
    }

    static func flatName(_ entry: Entry) -> String {
        Checkpoint.unprefixedComponents.contains(entry.component) ? entry.key : entry.component + "." + entry.key
    }

    /// The checkpoint the index describes, read from the file open at `descriptor` (`fileSize`
    /// bytes, the size the index was decoded against): the file is mapped (private copy-on-write,
    /// `MappedFile`) and every tensor is a zero-copy view of its bytes, so nothing is copied and a
    /// tensor never touched is never read; names sharing an extent share one `Tensor`. The
    /// provenance is decoded from the index, the metric histories read from the mapping.
    /// - Parameter only: keep these components (all when nil), as `Checkpoint.keeping(_:)`.
    /// - Throws: `CheckpointError.corrupt` when the provenance is not valid, `.io` when the file
    ///   cannot be mapped.
    public func checkpoint(descriptor: Int32, fileSize: Int64, fileName: String, only: Set<String>? = nil) throws -> Checkpoint {
        var provenance = try CheckpointReader.decodeProvenance(provenanceJSON, fileName: fileName)
        let file = try MappedFile(descriptor: descriptor, size: Int(fileSize), name: fileName)
        func view(_ offset: UInt64, _ count: Int) -> Data {
            count == 0 ? Data() : file.data(Int(offset), Int(offset) + count)
        }
        var byOffset: [UInt64: Tensor] = [:]
        var result = OrderedDictionary<String, StateDict>()
        for component in components where only?.contains(component) ?? true { result[component] = StateDict() }
        for entry in tensors where result[entry.component] != nil {
            let tensor: Tensor
            if entry.byteCount > 0, let shared = byOffset[entry.offset] {
                tensor = shared
            } else {
                tensor = try Tensor(dtype: entry.dtype, shape: entry.shape, data: view(entry.offset, entry.byteCount))
                if entry.byteCount > 0 { byOffset[entry.offset] = tensor }
            }
            result[entry.component]![entry.key] = tensor
        }
        for history in histories {
            let bytes = file.bytes(Int(history.offset), Int(history.offset) + history.count * 8)
            provenance.metricHistory[history.metric] = (0..<history.count).map {
                Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))
            }
        }
        let checkpoint = Checkpoint(components: result, architecture: architecture, provenance: provenance, aliases: aliases)
        return only.map { checkpoint.keeping($0) } ?? checkpoint
    }

    // MARK: - writing

    /// The index `CheckpointFile` writes for `checkpoint`, offsets 0 and the content id a
    /// placeholder until the file is written (neither changes the encoded length).
    static func layout(of checkpoint: Checkpoint, provenanceJSON: String) -> TensorIndex {
        var tensors: [Entry] = []
        for (component, stateDict) in checkpoint.components {
            for (key, tensor) in stateDict {
                tensors.append(Entry(component: component, key: key, dtype: tensor.dtype, shape: tensor.shape, offset: 0,
                                     byteCount: tensor.data.count))
            }
        }
        let histories = checkpoint.provenance.metricHistory
            .sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            .map { History(metric: $0.key, offset: 0, count: $0.value.count) }
        return TensorIndex(contentID: String(repeating: "0", count: 64), architecture: checkpoint.architecture,
                           provenanceJSON: provenanceJSON, components: Array(checkpoint.components.keys),
                           tensors: tensors, histories: histories)
    }

    /// Header and payload, as schemas/checkpoint-v1.md ("Tensor index") lays them out.
    func encoded() -> [UInt8] {
        var payload = Bytes()
        payload.string(contentID)
        payload.architecture(architecture)
        payload.string(provenanceJSON)
        payload.u64(UInt64(components.count))
        var next = 0
        for component in components {
            let end = tensors[next...].firstIndex { $0.component != component } ?? tensors.count
            payload.string(component)
            payload.u64(UInt64(end - next))
            for entry in tensors[next..<end] {
                payload.string(entry.key)
                payload.string(entry.dtype.rawValue)
                payload.u64(UInt64(entry.shape.count))
                for dim in entry.shape { payload.u64(UInt64(dim)) }
                payload.u64(entry.offset)
                payload.u64(UInt64(entry.byteCount))
            }
            next = end
        }
        payload.u64(UInt64(histories.count))
        for history in histories {
            payload.string(history.metric)
            payload.u64(history.offset)
            payload.u64(UInt64(history.count))
        }
        var block = Bytes()
        block.string(Self.tag)
        block.u64(UInt64(payload.bytes.count))
        return block.bytes + payload.bytes
    }

    /// The HDF5 user block that holds `count` bytes of index: a power of two, at least 512 (HDF5's rule).
    static func userBlockSize(holding count: Int) -> Int {
        var size = 512
        while size < count { size *= 2 }
        return size
    }

    /// Writes the encoded index at the start of the file `url` (its user block of `userBlock` bytes,
    /// the rest of which is zeroed).
    /// - Throws: `CheckpointError.io` when the file cannot be written.
    func write(into url: URL, userBlock: Int) throws {
        var block = encoded()
        precondition(block.count <= userBlock, "tensor index outgrew its user block")
        block += [UInt8](repeating: 0, count: userBlock - block.count)
        let fd = open(url.path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var done = 0
        while done < block.count {
            let n = block.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw CheckpointError.io("cannot write \(url.path): \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    // MARK: - bytes

    private struct Bytes: SpecEncoding {
        var bytes: [UInt8] = []
        mutating func raw(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
    }

    /// Fills `buffer` with the file's first bytes.
    private static func preadFully(_ descriptor: Int32, _ buffer: inout [UInt8], fileName: String) throws {
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw CheckpointError.io("cannot read \(fileName): \(String(cString: strerror(errno)))") }
            guard n > 0 else { throw CheckpointError.corrupt("\(fileName): the file ended early (truncated)") }
            done += n
        }
    }

    /// Reads the encodings of `SpecEncoding` back, every length checked against the bytes left.
    private struct Cursor {
        let base: UnsafeRawBufferPointer
        var position = 0
        let fileName: String

        init(_ base: UnsafeRawBufferPointer, fileName: String) {
            self.base = base
            self.fileName = fileName
        }

        init(_ slice: Slice<UnsafeRawBufferPointer>, fileName: String) {
            self.init(UnsafeRawBufferPointer(rebasing: slice), fileName: fileName)
        }

        var remaining: Int { base.count - position }
        var isAtEnd: Bool { position == base.count }

        func corrupt(_ what: String) -> CheckpointError { .corrupt("\(fileName): malformed tensor index (\(what))") }

        mutating func u8() throws -> UInt8 {
            guard remaining >= 1 else { throw corrupt("ends early") }
            defer { position += 1 }
            return base[position]
        }

        mutating func u64() throws -> UInt64 {
            guard remaining >= 8 else { throw corrupt("ends early") }
            defer { position += 8 }
            return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
        }

        /// A `u64` that must fit in `Int`.
        mutating func int() throws -> Int {
            let v = try u64()
            guard v <= UInt64(Int.max) else { throw corrupt("number \(v) out of range") }
            return Int(v)
        }

        mutating func i64() throws -> Int { Int(Int64(bitPattern: try u64())) }

        /// A count of records that each take at least `minimumBytesEach` bytes: more than the bytes
        /// left could hold is refused before any loop runs.
        mutating func count(minimumBytesEach: Int) throws -> Int {
            let n = try u64()
            guard n <= UInt64(remaining / minimumBytesEach) else { throw corrupt("\(n) records in \(remaining) bytes") }
            return Int(n)
        }

        mutating func bytes() throws -> [UInt8] {
            let n = try u64()
            guard n <= UInt64(remaining) else { throw corrupt("a string of \(n) bytes with \(remaining) left") }
            defer { position += Int(n) }
            return Array(base[position..<(position + Int(n))])
        }

        mutating func string() throws -> String {
            let b = try bytes()
            guard let s = String(validating: b, as: UTF8.self) else { throw corrupt("a string that is not UTF-8") }
            return s
        }

        /// A component, key or metric name: UTF-8 without NUL (writers refuse NUL in names).
        mutating func name() throws -> String {
            let s = try string()
            guard !s.utf8.contains(0) else { throw corrupt("a name containing NUL") }
            return s
        }

        mutating func architecture() throws -> Architecture? {
            switch try u8() {
            case 0: return nil
            case 1: break
            default: throw corrupt("architecture flag")
            }
            let family = try string()
            let depth = try i64()
            let block = try string()
            var layers: [Int] = []
            for _ in 0..<(try count(minimumBytesEach: 8)) { layers.append(try i64()) }
            let width = try i64()
            let stem = try string()
            var heads: [String: Architecture.Head] = [:]
            for _ in 0..<(try count(minimumBytesEach: 24)) {
                let name = try string()
                let kind = try string()
                var dims: [Int] = []
                for _ in 0..<(try count(minimumBytesEach: 8)) { dims.append(try i64()) }
                guard heads.updateValue(Architecture.Head(kind: kind, dims: dims), forKey: name) == nil else { throw corrupt("head \(name) twice") }
            }
            return Architecture(family: family, depth: depth, block: block, layers: layers, width: width, stem: stem, heads: heads)
        }
    }
}
