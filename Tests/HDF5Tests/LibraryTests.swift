import HDF5
import XCTest
import TestSupport

final class LibraryTests: XCTestCase {
    func testLinkedLibraryIsHDF5OneDotTenOrLater() {
        let parts = hdf5LibraryVersion.split(separator: ".").compactMap { Int($0) }
        XCTAssertEqual(parts.count, 3)
        XCTAssertGreaterThanOrEqual(parts[0] * 100 + parts[1], 110)
    }
}
