import Collections
import Foundation

/// One entry point over every format: read any supported file, resolve it to a `Checkpoint`, write a
/// `Checkpoint` in any format. `bissl convert`, `import` and `export` all go through here.
public enum Interchange {
    /// The format a path's extension names: `.pth`/`.pt`/`.bin`/`.tar`/`.ckpt` -> pth, `.safetensors`,
    /// `.npz`, `.h5`/`.hdf5`; nil otherwise.
    public static func format(forPath path: String) -> InterchangeFormat? {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "pth", "pt", "bin", "tar", "ckpt": return .pth
        case "safetensors": return .safetensors
        case "npz": return .npz
        case "h5", "hdf5": return .h5
        default: return nil
        }
    }

    /// Decodes a source file by what its bytes say it is (never by its name).
    /// - Throws: `CheckpointError.notACheckpoint` naming what the file really is (HTML page, Git LFS
    ///   pointer, plain pickle, ...), or the reader's own error.
    public static func readSource(_ url: URL) throws -> SourceDocument {
        let kind = try FileSniffer.sniff(url)
        switch kind {
        case .pytorchZip, .pytorchLegacy: return try PyTorchFile.read(url)
        case .safetensors: return try SafetensorsFile.read(url)
        case .npz: return try NumPyArchive.read(url)
        default: throw CheckpointError.notACheckpoint(kind.describe(url.lastPathComponent))
        }
    }

    /// Reads any supported file as a checkpoint. Our own HDF5 files are read as they are (components
    /// filtered by `options.components`); every other format is decoded, resolved by `LayoutResolver`
    /// and given `imported` provenance that records the source file's SHA-256 and every rule applied.
    /// - Parameter allowPlainTensors: when the file holds one dict of tensors with no ResNet keys at
    ///   all, keep it as it is in a `tensors` component instead of refusing (`bissl convert` allows this,
    ///   `bissl import` does not: the zoo holds models whose architecture is known).
    /// - Parameter verifyStoredContentID: for our own `.h5`, refuse a file whose stored `content_id`
    ///   does not match its tensors (it was modified after bissl wrote it; `bissl import`).
    /// - Parameter recordCarriedStep: for our own `.h5`, append to `provenance.carriedFrom` a step
    ///   naming the file, its SHA-256, `commandLine` and the time (`bissl import`): the rest of the
    ///   record is the file's claim, carried as it is.
    public static func load(_ url: URL, options: LayoutOptions, allowPlainTensors: Bool = false,
                            verifyStoredContentID: Bool = false, recordCarriedStep: Bool = false,
                            commandLine: [String] = CommandLine.arguments) throws -> Checkpoint {
        let (checkpoint, sourceDigest) = try loadDeferringDigest(
            url, options: options, allowPlainTensors: allowPlainTensors, verifyStoredContentID: verifyStoredContentID,
            recordCarriedStep: recordCarriedStep, commandLine: commandLine)
        return try sourceDigest?.completing(checkpoint) ?? checkpoint
    }

    /// Tests only: called with the path once an own `.h5` is read (a test replaces the file there
    /// to check that what was read is what is recorded).
    nonisolated(unsafe) static var afterReadingForTesting: ((URL) -> Void)?

    /// `load`, returning before the source file's SHA-256 is known: `provenance.source.sha256` holds
    /// `SourceDigest.placeholder` and `sourceDigest` is still hashing the file (nil for our own `.h5`,
    /// read as it is). For a writer that needs the digest only at the end (`CheckpointFile.write`,
    /// `Zoo.add`): give them `sourceDigest`.
    public static func loadDeferringDigest(_ url: URL, options: LayoutOptions, allowPlainTensors: Bool = false,
                                           verifyStoredContentID: Bool = false, recordCarriedStep: Bool = false,
                                           commandLine: [String] = CommandLine.arguments) throws -> (checkpoint: Checkpoint, sourceDigest: SourceDigest?) {
        let started = isoNow()
        if CheckpointFile.isHDF5(url) {
            // An outside file: libhdf5 reads it in the HDF5 reader process (UntrustedCheckpointFile).
            // With a carried step, the file is hashed through the descriptor it was read from: the
            // recorded SHA-256 is the content read, even when another file is put at the path meanwhile.
            let contents = try UntrustedCheckpointFile.read(url, hashing: recordCarriedStep)
            afterReadingForTesting?(url)
            if verifyStoredContentID, let stored = contents.storedContentID {
                let computed = ContentID.compute(contents.checkpoint)
                guard stored == computed else {
                    throw CheckpointError.corrupt(
                        "\(url.lastPathComponent): stored content id \(stored) does not match its tensors (content id \(computed)); the file was modified after it was written")
                }
            }
            var checkpoint = try contents.checkpoint.selecting(options.components)
            if recordCarriedStep {
                guard let sha256 = contents.sha256 else { throw CheckpointError.io("cannot read \(url.path): not hashed") }
                let step = Provenance.CarriedStep(fileName: url.lastPathComponent, sha256: sha256,
                                                  commandLine: commandLine, importedAt: started)
                checkpoint.provenance.carriedFrom = (checkpoint.provenance.carriedFrom ?? []) + [step]
            }
            return (checkpoint, nil)
        }
        let sourceDigest = SourceDigest(of: url)
        let document = try readSource(url)
        if allowPlainTensors, let plain = plainTensors(document, options: options) {
            let aliases = StorageAliases.find(plain.map { ($0.key, $0.value) })
            let misfit = LayoutResolver.candidates(document).first?.misfit
            var rules = [(misfit.map { "ResNet backbone keys that fit no ResNet (\($0))" } ?? "no ResNet backbone keys")
                         + ": kept \(plain.count) tensors as they are in component 'tensors'"]
            if !aliases.isEmpty {
                rules.append("\(aliases.count) name(s) share storage with an earlier name: \(Checkpoint.describeAliases(aliases))")
            }
            let source = Provenance.Source(
                fileName: url.lastPathComponent, sha256: SourceDigest.placeholder, format: document.format.rawValue,
                container: document.container, rules: rules, aliases: aliases, metadata: document.metadata)
            let checkpoint = Checkpoint(
                components: ["tensors": plain.mapValues(\.tensor)], architecture: nil,
                provenance: Provenance(stage: "imported", source: source, warnings: document.warnings,
                                       commandLine: commandLine, startedAt: started, endedAt: isoNow()),
                aliases: aliases)
            return (checkpoint, sourceDigest)
        }
        let resolution = try LayoutResolver.resolve(document, options: options)
        var checkpoint = resolution.checkpoint(fileName: url.lastPathComponent, sha256: SourceDigest.placeholder,
                                               document: document, commandLine: commandLine)
        checkpoint.provenance.startedAt = started
        checkpoint.provenance.endedAt = isoNow()
        return (checkpoint, sourceDigest)
    }

    /// The one dict of tensors of a document in which no ResNet backbone key occurs anywhere, with
    /// its keys as the file names them; nil when there are several dicts, any backbone key, or options.
    static func plainTensors(_ document: SourceDocument, options: LayoutOptions) -> OrderedDictionary<String, SourceTensor>? {
        guard options.select == nil, options.stripPrefix == nil, options.components == .all else { return nil }
        let candidates = LayoutResolver.candidates(document)
        guard candidates.count == 1, candidates[0].architecture == nil else { return nil }
        let prefix = candidates[0].keyPath.isEmpty ? "" : candidates[0].keyPath + "."
        var dict = OrderedDictionary<String, SourceTensor>()
        for (path, tensor) in document.root.tensorPaths() where path.hasPrefix(prefix) {
            dict[String(path.dropFirst(prefix.count))] = tensor
        }
        return dict
    }

    /// Options of `write` that only some formats use; `checkOptions` refuses the others.
    public struct WriteOptions: Equatable, Sendable {
        /// `.pth` only: the pre-1.6 stream container instead of zip.
        public var legacy: Bool
        /// `.npz` only: deflated members (as `numpy.savez_compressed`) instead of stored.
        public var compressed: Bool
        /// `.npz` only: how bfloat16 tensors are stored (`NumPyArchive.BFloat16Encoding`); nil means
        /// the default, an exact float32 upcast with a note.
        public var bfloat16: NumPyArchive.BFloat16Encoding?

        public init(legacy: Bool = false, compressed: Bool = false, bfloat16: NumPyArchive.BFloat16Encoding? = nil) {
            self.legacy = legacy
            self.compressed = compressed
            self.bfloat16 = bfloat16
        }
    }

    /// Writes `checkpoint` as `format`. Interchange formats get one flat state dict
    /// (`Checkpoint.flatStateDict`); safetensors carries a provenance summary in `__metadata__`.
    ///
    /// Aliases (`Checkpoint.sharedAliases(in:)`) are kept where the format can share: HDF5
    /// hard links, `.pth` storages shared between names. safetensors and `.npz` cannot (safetensors
    /// forbids overlapping tensors, an `.npz` member is one array), so they get one copy per name and
    /// a note says so.
    /// - Returns: notes for the user (one line each, no prefix), e.g. `1 aliased tensor
    ///   (decoder.weight = encoder.weight) written as a separate copy: safetensors cannot share storage`,
    ///   or the bfloat16 tensors an `.npz` got as float32; empty when nothing was changed or lost.
    /// - Throws: `CheckpointError.invalid` (nothing written) for an option the format does not use
    ///   (`checkOptions`); the writer's `CheckpointError` (`.io` when the file cannot be written).
    /// - Parameter sourceDigest: completes `provenance.source.sha256` (`Interchange.loadDeferringDigest`):
    ///   the `.h5` writer waits for it only after the tensors are written, the others before writing.
    @discardableResult
    public static func write(_ checkpoint: Checkpoint, to url: URL, format: InterchangeFormat,
                             options: WriteOptions = WriteOptions(), sourceDigest: SourceDigest? = nil) throws -> [String] {
        try checkOptions(format: format, options: options)
        let checkpoint = format == .h5 ? checkpoint : try sourceDigest?.completing(checkpoint) ?? checkpoint
        switch format {
        case .h5:
            try CheckpointFile.write(checkpoint, to: url, sourceDigest: sourceDigest)
            return []
        case .pth:
            let flat = checkpoint.flatStateDict()
            try PyTorchFile.write(flat, to: url, legacy: options.legacy, aliases: checkpoint.sharedAliases(in: flat))
            return []
        case .safetensors:
            let flat = checkpoint.flatStateDict()
            try SafetensorsFile.write(flat, metadata: safetensorsMetadata(checkpoint), to: url)
            return copiedAliasNotes(checkpoint.sharedAliases(in: flat), format: "safetensors")
        case .npz:
            let flat = checkpoint.flatStateDict()
            let encoding = options.bfloat16 ?? .float32
            let bfloat16Keys = try NumPyArchive.write(flat, to: url, compressed: options.compressed, bfloat16: encoding)
            var notes = copiedAliasNotes(checkpoint.sharedAliases(in: flat), format: "npz")
            if encoding == .float32 && !bfloat16Keys.isEmpty {
                let what = bfloat16Keys.count == 1 ? "1 bfloat16 tensor" : "\(bfloat16Keys.count) bfloat16 tensors"
                notes.append("\(what) written as float32 (exact: NumPy has no bfloat16); --bf16 bits keeps the 16-bit patterns as uint16 under the same keys")
            }
            return notes
        }
    }

    /// Refuses writer options the format does not use, instead of ignoring them: `legacy` (the
    /// pre-1.6 stream container) exists only for `.pth`, `compressed` (deflated members) and
    /// `bfloat16` only for `.npz`.
    /// - Throws: `CheckpointError.invalid` with a one-line message naming the option and the format.
    public static func checkOptions(format: InterchangeFormat, options: WriteOptions) throws {
        if options.legacy && format != .pth {
            throw CheckpointError.invalid("--legacy applies only to pth output, not \(format.rawValue)")
        }
        if options.compressed && format != .npz {
            throw CheckpointError.invalid("--compress applies only to npz output, not \(format.rawValue)")
        }
        if options.bfloat16 != nil && format != .npz {
            throw CheckpointError.invalid("--bf16 applies only to npz output, not \(format.rawValue)")
        }
    }

    /// The note for aliases a format wrote as copies; none when `shared` is empty.
    static func copiedAliasNotes(_ shared: [String: String], format: String) -> [String] {
        guard !shared.isEmpty else { return [] }
        let what = shared.count == 1 ? "1 aliased tensor" : "\(shared.count) aliased tensors"
        let copies = shared.count == 1 ? "a separate copy" : "separate copies"
        return ["\(what) (\(Checkpoint.describeAliases(shared))) written as \(copies): \(format) cannot share storage"]
    }

    /// `__metadata__` of an exported safetensors file: `format: pt` (the Hugging Face convention) and
    /// `provenanceSummary`.
    public static func safetensorsMetadata(_ checkpoint: Checkpoint) -> [String: String] {
        provenanceSummary(checkpoint).merging(["format": "pt"]) { ours, _ in ours }
    }

    /// What an exported file says about where it came from, as string pairs (safetensors
    /// `__metadata__`, ONNX `metadata_props`): `bissl.content_id` (`ContentID` of `checkpoint`),
    /// `bissl.stage`, `bissl.arch` (architecture label, when known) and `bissl.provenance` (the full
    /// provenance as compact JSON with sorted keys, schemas/provenance.schema.json; non-finite numbers
    /// as the strings `NaN`, `Infinity`, `-Infinity`).
    public static func provenanceSummary(_ checkpoint: Checkpoint) -> [String: String] {
        var meta = ["bissl.content_id": ContentID.compute(checkpoint), "bissl.stage": checkpoint.provenance.stage]
        if let arch = checkpoint.architecture { meta["bissl.arch"] = arch.label }
        let encoder = JSONEncoder.bissl()
        if let json = try? encoder.encode(checkpoint.provenance) { meta["bissl.provenance"] = String(decoding: json, as: UTF8.self) }
        return meta
    }

    static func isoNow() -> String { ISO8601DateFormatter().string(from: Date()) }
}

extension Checkpoint {
    /// This checkpoint with only the selected components: `.all` keeps everything, `.backbone` keeps
    /// the backbone and drops the heads from the architecture record.
    /// - Throws: `CheckpointError.invalid` when `.backbone` is asked of a checkpoint without one.
    public func selecting(_ selection: ComponentSelection) throws -> Checkpoint {
        guard selection == .backbone else { return self }
        guard components["backbone"] != nil else {
            throw CheckpointError.invalid("no backbone component (it has \(components.keys.joined(separator: ", ")))")
        }
        return keeping(["backbone"])
    }
}

extension Checkpoint {
    /// This checkpoint with its floating-point tensors cast to `dtype` (`Precision.cast` per
    /// component: BN running statistics keep their precision on a narrowing cast unless
    /// `castBuffers`), the cast recorded as a rule in `provenance.source` and its warnings (values
    /// that overflow or vanish) in `provenance.warnings`.
    /// - Returns: the cast checkpoint and the new warnings, one line each.
    /// - Throws: `CheckpointError.invalid` when `dtype` is not a floating-point type.
    public func casting(to dtype: DType, castBuffers: Bool) throws -> (Checkpoint, [String]) {
        var copy = self
        var warnings: [String] = []
        for (name, tensors) in components {
            let (cast, found) = try Precision.cast(tensors, to: dtype, castBuffers: castBuffers)
            copy.components[name] = cast
            warnings += found.map { "\(name): \($0)" }
        }
        let buffers = castBuffers ? "BN running statistics included" : "BN running statistics kept in their precision"
        copy.provenance.source?.rules.append("cast floating-point tensors to \(dtype.rawValue) (\(buffers))")
        copy.provenance.warnings += warnings
        return (copy, warnings)
    }
}
