import CHDF5

/// A failed HDF5 call: which operation, on which object.
public struct HDF5Error: Error, CustomStringConvertible, Equatable {
    public let message: String
    /// True when the file was refused because it names data outside itself (an external, soft or
    /// user-defined link, external storage, a virtual dataset: `File.requireOnlyHardLinks`,
    /// `Dataset.requireStoredInFile`): not damage, a file bissl will not read.
    public let leavesTheFile: Bool
    public init(_ message: String, leavesTheFile: Bool = false) {
        self.message = message
        self.leavesTheFile = leavesTheFile
    }
    public var description: String { "HDF5: \(message)" }
}

/// The HDF5 library this binary is linked against, e.g. `1.10.8`.
public var hdf5LibraryVersion: String {
    var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
    H5get_libversion(&major, &minor, &release)
    return "\(major).\(minor).\(release)"
}
