import Foundation

/// PyTorch `.pth` / `.pt` files: `torch.save` output read without Python and without executing
/// anything, and state dicts written so that `torch.load(weights_only=True)` followed by
/// `load_state_dict(strict=True)` accepts them. Format: PyTorch `torch/serialization.py`.
public enum PyTorchFile {
    /// Reads a `torch.save` file: the zip container (PyTorch >= 1.6, any top folder) or the legacy
    /// stream (pre-1.6 / `_use_new_zipfile_serialization=False`).
    ///
    /// - Returns: a `SourceDocument` with `format == .pth`, `container` `pytorch-zip` or
    ///   `pytorch-legacy`, the decoded object tree (tensors C-contiguous and little-endian, bf16 kept
    ///   as raw bits; `SourceTensor` keeps storage key, offset, stride and device tag), metadata
    ///   (`byteorder`, and for zips `zip_folder`, `version`, `byteorder_record` = `little`, `big` or
    ///   `absent`, ...) and warnings for fields skipped because they need a global outside torch's
    ///   weights-only allowlist (named with the global and the key path).
    /// - Throws: `CheckpointError.notACheckpoint` naming what the file really is (HTML page, Git LFS
    ///   pointer with oid and size, plain pickle with the globals it references, ...);
    ///   `.corrupt` for a truncated ZIP (with sizes) or a CRC mismatch (naming the record and the
    ///   tensor); `.unsafe` when a tensor needs a global outside the allowlist; `.unsupported` for
    ///   TorchScript archives, the pre-0.4 tar format, unsupported dtypes or archive versions.
    public static func read(_ url: URL) throws -> SourceDocument {
        let kind = try FileSniffer.sniff(url)
        let file = url.lastPathComponent
        switch kind {
        case .pytorchZip:
            return try PyTorchZipReader.read(url)
        case .pytorchLegacy:
            return try PyTorchLegacyReader.read(url)
        case .torchScript, .pytorchTar:
            throw CheckpointError.unsupported(kind.describe(file))
        case .safetensors, .hdf5, .npz:
            throw CheckpointError.notACheckpoint("\(kind.describe(file)), not a PyTorch checkpoint")
        case .zip:
            // A zip whose central directory could not be listed (damaged) or with an unexpected
            // layout: let the zip reader give the precise reason.
            return try PyTorchZipReader.read(url)
        case .rawPickle, .html, .text, .gitLFSPointer, .empty, .npy, .truncatedSafetensors, .unknown:
            throw CheckpointError.notACheckpoint(kind.describe(file))
        }
    }

    /// Writes `stateDict` as `torch.save(state_dict, url)` in torch 2.x does (zip container, top
    /// folder = the file's stem), or in the legacy stream format when `legacy` is true.
    ///
    /// Tensors are written in order, one storage each (`data/0`, `data/1`, ...), C-contiguous,
    /// little-endian, on device `cpu`; every dtype of `DType` maps to its typed storage
    /// (`torch.FloatStorage`, `torch.BFloat16Storage`, `torch.LongStorage`, `torch.BoolStorage`, ...).
    /// Each name in `aliases` shares the storage record of the name it maps to (same persistent id
    /// key, one `data/<i>` record), as `torch.save` writes tied weights, so `torch.load`
    /// gives tensors on one storage (`a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()`).
    /// The file is published atomically (nothing is left at `url` on failure).
    /// - Parameter aliases: state-dict name -> state-dict name it shares its tensor with (chains
    ///   allowed), e.g. `Checkpoint.sharedAliases(in:)`; empty writes one storage per tensor.
    /// - Throws: `CheckpointError.io` when the file cannot be written; `.invalid` when an alias names a
    ///   key not in `stateDict`, its two tensors differ (dtype, shape or bytes), or aliases form a cycle.
    public static func write(_ stateDict: StateDict, to url: URL, legacy: Bool = false,
                             aliases: [String: String] = [:]) throws {
        if legacy {
            try PyTorchLegacyWriter.write(stateDict, to: url, aliases: aliases)
        } else {
            try PyTorchZipWriter.write(stateDict, to: url, aliases: aliases)
        }
    }
}
