import Foundation

/// A text table built as UTF-8 bytes: left-aligned columns separated by two spaces, the last column
/// not padded, no trailing spaces on a line. Cells are appended row by row into one byte buffer and
/// each cell's width is counted once, so a table of a million cells (`list` of 100,000 entries)
/// makes no string per cell. A cell holding a control character (a name or field from a file or a
/// remote's manifest) is stored with it written as an escape (`String.escapingControlCharacters`).
struct TextTable {
    private let columns: Int
    private var bytes: [UInt8] = []
    /// Per cell, in row-major order: where its bytes end in `bytes`, and its width in characters.
    private var ends: [Int] = []
    private var widths: [Int] = []
    /// The current cell's first byte.
    private var cellStart = 0

    init(header: [String]) {
        columns = header.count
        for cell in header { append(cell) }
    }

    /// Rows appended so far, the header included.
    var rowCount: Int { ends.count / max(columns, 1) }

    /// Appends one whole cell.
    mutating func append(_ cell: String) {
        var cell = cell
        cell.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends one whole cell given as UTF-8 bytes.
    mutating func append(_ cell: UnsafeRawBufferPointer) {
        extend(cell)
        endCell()
    }

    /// Appends bytes to the cell being built (finish it with `endCell`).
    mutating func extend(_ part: UnsafeRawBufferPointer) { bytes.append(contentsOf: part) }

    /// Appends one byte to the cell being built.
    mutating func extend(byte: UInt8) { bytes.append(byte) }

    /// Appends text to the cell being built.
    mutating func extend(_ part: String) {
        var part = part
        part.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// Ends the cell being built.
    mutating func endCell() {
        if bytes[cellStart...].contains(where: Self.mayStartAControlCharacter) {
            let escaped = String(decoding: bytes[cellStart...], as: UTF8.self).escapingControlCharacters
            bytes.removeSubrange(cellStart...)
            bytes.append(contentsOf: escaped.utf8)
        }
        ends.append(bytes.count)
        widths.append(Self.width(bytes[cellStart..<bytes.count]))
        cellStart = bytes.count
    }

    /// The table's text, lines joined by line feeds, no final line feed.
    func rendered() -> [UInt8] {
        precondition(ends.count % columns == 0, "TextTable: a row is incomplete")
        var columnWidths = [Int](repeating: 0, count: columns)
        for (i, w) in widths.enumerated() where w > columnWidths[i % columns] { columnWidths[i % columns] = w }
        var out: [UInt8] = []
        out.reserveCapacity(rowCount * (columnWidths.reduce(0, +) + 2 * columns + 1))
        var start = 0
        bytes.withUnsafeBufferPointer { source in
            for row in 0..<rowCount {
                if row > 0 { out.append(0x0A) }
                let lineStart = out.count
                for column in 0..<columns {
                    let i = row * columns + column
                    if column > 0 { out.append(contentsOf: [0x20, 0x20]) }
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: source[start..<ends[i]]))
                    if column < columns - 1 { out.append(contentsOf: repeatElement(0x20, count: columnWidths[column] - widths[i])) }
                    start = ends[i]
                }
                while out.count > lineStart, out.last == 0x20 { out.removeLast() }
            }
        }
        return out
    }

    /// `rendered()` as a string.
    var text: String { String(decoding: rendered(), as: UTF8.self) }

    /// A UTF-8 byte that is or may begin a character `escapingControlCharacters` escapes: C0 controls
    /// and DEL, 0xC2 (C1 controls U+0080-U+009F), 0xE2 (U+2028, U+2029).
    private static func mayStartAControlCharacter(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == 0x7F || byte == 0xC2 || byte == 0xE2
    }

    /// Characters of a cell: for an ASCII cell (nearly all) its byte count, else its character count.
    private static func width(_ cell: ArraySlice<UInt8>) -> Int {
        cell.allSatisfy { $0 < 0x80 } ? cell.count : String(decoding: cell, as: UTF8.self).count
    }
}
