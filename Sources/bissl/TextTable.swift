import Foundation

/// A text table built as UTF-8 bytes: left-aligned columns separated by two spaces, the last column
/// not padded, no trailing spaces on a line. Cells are appended row by row into one byte buffer;
/// each column's width is kept up to date as cells end, and a cell's own width is stored only when
/// it differs from its byte count (non-ASCII text), so a table of a million cells (`list` of 100,000
/// entries) makes no string per cell and keeps one integer per cell besides its bytes. A cell holding
/// a control character (a name or field from a file or a remote's manifest) is stored with it written
/// as an escape (`String.escapingControlCharacters`).
struct TextTable {
    private let columns: Int
    private var bytes: [UInt8] = []
    /// Per cell, in row-major order: where its bytes end in `bytes`.
    private var ends: [Int] = []
    /// Per column: its widest cell so far, in characters.
    private var columnWidths: [Int]
    /// Cell index -> width in characters, for the cells whose width is not their byte count.
    private var narrowCells: [Int: Int] = [:]
    /// The current cell's first byte.
    private var cellStart = 0

    init(header: [String]) {
        columns = header.count
        columnWidths = [Int](repeating: 0, count: header.count)
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

    /// Appends bytes to the cell being built, each byte `old` written as `new`.
    mutating func extend(_ part: UnsafeRawBufferPointer, replacing old: UInt8, with new: UInt8) {
        let start = bytes.count
        bytes.append(contentsOf: part)
        for i in start..<bytes.count where bytes[i] == old { bytes[i] = new }
    }

    /// Appends text to the cell being built.
    mutating func extend(_ part: String) {
        var part = part
        part.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// Ends the cell being built. One pass over its bytes finds both whether it is ASCII (then its
    /// width is its byte count) and whether it may hold a control character (a byte below 0x20 or
    /// DEL); only a cell with non-ASCII bytes or a control character is looked at again (for C1
    /// controls and U+2028/U+2029, the escape, and its width in characters).
    mutating func endCell() {
        var high: UInt8 = 0, low: UInt8 = 0xFF, deletes: UInt8 = 0
        bytes.withUnsafeBufferPointer { all in
            for byte in UnsafeBufferPointer(rebasing: all[cellStart...]) {
                high |= byte
                low = min(low, byte)
                deletes |= byte == 0x7F ? 1 : 0
            }
        }
        var ascii = high < 0x80
        if low < 0x20 || deletes != 0 || (!ascii && bytes[cellStart...].contains(where: Self.mayStartAMultiByteControlCharacter)) {
            let escaped = String(decoding: bytes[cellStart...], as: UTF8.self).escapingControlCharacters
            bytes.removeSubrange(cellStart...)
            bytes.append(contentsOf: escaped.utf8)
            ascii = escaped.utf8.allSatisfy { $0 < 0x80 }
        }
        let cell = ends.count
        let count = bytes.count - cellStart
        let width = ascii ? count : String(decoding: bytes[cellStart...], as: UTF8.self).count
        if width != count { narrowCells[cell] = width }
        let column = cell % columns
        if width > columnWidths[column] { columnWidths[column] = width }
        ends.append(bytes.count)
        cellStart = bytes.count
    }

    /// The table's text, lines joined by line feeds, no final line feed.
    func rendered() -> [UInt8] {
        precondition(ends.count % columns == 0, "TextTable: a row is incomplete")
        // Each line holds its cells' bytes plus at most each padded column's width and separator.
        let padding = columnWidths.dropLast().reduce(0, +) + 2 * (columns - 1)
        let bound = bytes.count + rowCount * (padding + 1)
        let allByteWide = narrowCells.isEmpty
        return [UInt8](unsafeUninitializedCapacity: bound) { out, written in
            bytes.withUnsafeBufferPointer { source in
                var at = 0
                var start = 0
                for row in 0..<rowCount {
                    if row > 0 { out[at] = 0x0A; at += 1 }
                    let lineStart = at
                    for column in 0..<columns {
                        let i = row * columns + column
                        if column > 0 { out[at] = 0x20; out[at + 1] = 0x20; at += 2 }
                        let count = ends[i] - start
                        if count > 0 {
                            UnsafeMutableRawPointer(out.baseAddress! + at).copyMemory(from: source.baseAddress! + start, byteCount: count)
                            at += count
                        }
                        if column < columns - 1 {
                            let pad = columnWidths[column] - (allByteWide ? count : narrowCells[i] ?? count)
                            if pad > 0 {
                                (out.baseAddress! + at).initialize(repeating: 0x20, count: pad)
                                at += pad
                            }
                        }
                        start = ends[i]
                    }
                    while at > lineStart, out[at - 1] == 0x20 { at -= 1 }
                }
                written = at
            }
        }
    }

    /// `rendered()` as a string.
    var text: String { String(decoding: rendered(), as: UTF8.self) }

    /// A UTF-8 lead byte that may begin a multi-byte character `escapingControlCharacters` escapes:
    /// 0xC2 (C1 controls U+0080-U+009F), 0xE2 (U+2028, U+2029).
    private static func mayStartAMultiByteControlCharacter(_ byte: UInt8) -> Bool {
        byte == 0xC2 || byte == 0xE2
    }
}
