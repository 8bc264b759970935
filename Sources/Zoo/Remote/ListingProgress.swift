/// The check that keeps a paginated listing (ListObjectsV2, ListParts, ListMultipartUploads) from running
/// forever against a server that says more pages follow without ever finishing: every continuation token
/// or marker must be new, a page must add a record the listing has not seen (up to
/// `Self.pagesWithoutNewRecords` pages in a row may add none: an empty truncated page is allowed), and a
/// listing holds at most `Self.maximumRecords` records (schemas/remote.md, "What the protocol relies on, and how it degrades").
struct ListingProgress {
    /// Pages in a row that may add no new record before the listing is called stuck.
    static let pagesWithoutNewRecords = 16
    /// Records one listing may hold (10 million keys: a zoo of millions of entries; bounds memory).
    static let maximumRecords = 10_000_000

    /// What is listed, for the error message (`listing s3://bucket/prefix/entries/`).
    let what: String
    private var tokens: Set<String> = []
    private var records: Set<String> = []
    private var idlePages = 0

    init(_ what: String) { self.what = what }

    /// Records one page: its record identities (keys, part numbers, key + upload id) and the token or
    /// marker it gave for the next page (nil: the listing is complete).
    /// - Returns: whether another page is to be asked for.
    /// - Throws: `ZooError.corrupt` when the token repeats, too many pages add nothing, or the listing
    ///   grows past `maximumRecords`.
    mutating func next(after page: [String], token: String?) throws -> Bool {
        let before = records.count
        records.formUnion(page)
        guard records.count <= Self.maximumRecords else {
            throw ZooError.corrupt("\(what) holds more than \(Self.maximumRecords) records; bissl reads at most that many")
        }
        guard let token else { return false }
        idlePages = records.count > before ? 0 : idlePages + 1
        guard tokens.insert(token).inserted else {
            throw ZooError.corrupt("\(what) does not advance (the server gave a continuation token it gave before)")
        }
        guard idlePages <= Self.pagesWithoutNewRecords else {
            throw ZooError.corrupt("\(what) does not advance (\(idlePages) pages in a row added nothing)")
        }
        return true
    }
}
