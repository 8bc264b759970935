@testable import Checkpoint
import Foundation
import XCTest
import TestSupport

/// A dict whose tensors are fine next to a field built from a global we never run
/// (tools/fixtures/make_opaque_field_fixtures.py: `{'x': tensor([1.5, -2.0]), 'evil': os.system("true")}`).
final class OpaqueFieldTests: XCTestCase {
    func testOpaqueFieldIsDroppedWithAWarningAndTheTensorsConvert() throws {
        for name in ["opaque_field.pth", "opaque_field_legacy.pth"] {
            let checkpoint = try Interchange.load(Fixtures.url("pth/\(name)"), options: .init(), allowPlainTensors: true)
            XCTAssertEqual(Array(checkpoint.components.keys), ["tensors"], name)
            let x = try XCTUnwrap(checkpoint.components["tensors"]?["x"], name)
            XCTAssertEqual(checkpoint.components["tensors"]?.count, 1, name)
            XCTAssertEqual(x.shape, [2], name)
            XCTAssertEqual(x.floats(), [1.5, -2.0], name)
            XCTAssertTrue(checkpoint.provenance.warnings.contains {
                $0.hasPrefix("skipped evil: it needs posix.system") && $0.hasSuffix("(never executed)")
            }, "\(name): \(checkpoint.provenance.warnings)")
        }
    }

    func testOpaqueFieldsDoNotOutvoteTensors() throws {
        // One tensor and one opaque field is a dict of tensors; one tensor and one int is not.
        let x = ObjectValue.DictEntry(key: .string("x"), value: .tensor(LayoutTrees.tensor([2], seed: 0)))
        let withOpaque = CandidateSearch.walk(.dict([x, .init(key: .string("evil"), value: .opaque(global: "posix.system"))]))
        XCTAssertEqual(withOpaque.dicts.map(\.otherKeys), [["evil"]])
        let withInt = CandidateSearch.walk(.dict([x, .init(key: .string("epoch"), value: .int(3))]))
        XCTAssertTrue(withInt.dicts.isEmpty)
    }
}
