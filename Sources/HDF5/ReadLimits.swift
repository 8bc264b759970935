import CHDF5
import CZlib

/// Sizes a file declares are checked before anything is allocated for them.
///
/// - A dataspace's element count must fit in `Int` (`Dataspace.shape` refuses it otherwise).
/// - A read of a dataset or attribute allocates at most `maxExpansion` times the bytes the object
///   occupies in the file (`H5Dget_storage_size` / `H5Aget_storage_size`) plus `slack`: stored
///   data cannot decode to more (deflate's largest expansion, RFC 1951), so a 1.6 KB file whose
///   never-written dataset declares 128 GB is refused instead of being allocated.
enum ReadLimits {
    /// DEFLATE's largest expansion (`bissl_deflate_max_expansion`, Sources/CZlib/shim.h).
    static let maxExpansion = UInt64(bissl_deflate_max_expansion)
    /// Allowance for fill values and rounding of tiny objects (64 KiB).
    static let slack: UInt64 = 1 << 16

    /// The product of `dims` as an `Int`, nil when it (or a dimension) does not fit.
    static func elementCount(_ dims: [hsize_t]) -> Int? {
        var count = 1
        for d in dims {
            guard let v = Int(exactly: d) else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: v)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// `count * elementSize` bytes, checked against overflow and against what `storedBytes` bytes in
    /// the file can hold.
    /// - Throws: `HDF5Error` naming `what` when the size overflows or the file cannot hold it.
    static func checkedBytes(count: Int, elementSize: Int, storedBytes: hsize_t, what: @autoclosure () -> String) throws -> Int {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow, count >= 0, elementSize >= 0 else {
            throw HDF5Error("\(what()) declares \(count) elements of \(elementSize) bytes: more than fits in memory")
        }
        let (bound, boundOverflow) = storedBytes.multipliedReportingOverflow(by: maxExpansion)
        guard boundOverflow || UInt64(bytes) <= bound + slack else {
            throw HDF5Error("\(what()) declares \(bytes) bytes but occupies \(storedBytes) bytes in the file; refusing to allocate it")
        }
        return bytes
    }
}
