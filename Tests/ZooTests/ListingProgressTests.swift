import XCTest
@testable import Zoo

/// `ListingProgress`: a paginated listing ends or fails; it never follows a server that keeps saying
/// more pages follow (schemas/remote.md, "What the protocol relies on, and how it degrades").
final class ListingProgressTests: XCTestCase {
    func testAnHonestListingRunsToItsEnd() throws {
        var progress = ListingProgress("listing s3://b/z/entries/")
        XCTAssertTrue(try progress.next(after: ["a", "b"], token: "t1"))
        XCTAssertTrue(try progress.next(after: [], token: "t2"))   // an empty truncated page is allowed
        XCTAssertTrue(try progress.next(after: ["c"], token: "t3"))
        XCTAssertFalse(try progress.next(after: ["d"], token: nil))
    }

    func testTokensThatCycleFail() throws {
        // The same token twice in a row, and two tokens taking turns (A, B, A): both a loop.
        var same = ListingProgress("listing x")
        XCTAssertTrue(try same.next(after: ["a"], token: "A"))
        XCTAssertThrowsError(try same.next(after: ["b"], token: "A"))
        var turns = ListingProgress("listing x")
        XCTAssertTrue(try turns.next(after: ["a"], token: "A"))
        XCTAssertTrue(try turns.next(after: ["b"], token: "B"))
        XCTAssertThrowsError(try turns.next(after: ["c"], token: "A")) { error in
            XCTAssertTrue("\(error)".contains("listing x does not advance"), "\(error)")
        }
    }

    func testNewTokensWithNothingNewFailAfterTheAllowance() throws {
        // A server that gives a fresh token with every page but never a new key (empty pages, or the same
        // keys again) is stopped after `pagesWithoutNewRecords` such pages in a row.
        var progress = ListingProgress("listing x")
        XCTAssertTrue(try progress.next(after: ["a"], token: "t0"))
        for i in 1...ListingProgress.pagesWithoutNewRecords {
            XCTAssertTrue(try progress.next(after: i % 2 == 0 ? [] : ["a"], token: "t\(i)"))
        }
        XCTAssertThrowsError(try progress.next(after: ["a"], token: "last")) { error in
            XCTAssertTrue("\(error)".contains("pages in a row added nothing"), "\(error)")
        }
    }
}
