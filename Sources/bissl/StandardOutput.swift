import BisslCore
import Foundation

/// Every `print` of the `bissl` command goes here rather than to `Swift.print`: the text is written
/// with the control characters of each line escaped (`String.escapingControlCharacters`: `\r`,
/// `\t`, ESC as `\u{1B}`, ...), the line feeds between lines kept. Names, paths, keys and provenance
/// quoted from a file or a remote therefore never send a terminal control sequence, whichever
/// command prints them and however a table or report is assembled. A line feed inside such a value
/// would still start a new line: single lines that quote one go through `ZooOutput.printLine`,
/// which escapes line feeds too, and the renderers escape their fields.
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    let text = items.map { "\($0)" }.joined(separator: separator)
    Swift.print(text.escapingControlCharactersInEachLine, terminator: terminator)
}

extension String {
    /// Each line (split at line feeds) with `escapingControlCharacters` applied, joined by line
    /// feeds again. Linear in the length; text without another control character is returned as is.
    var escapingControlCharactersInEachLine: String {
        guard unicodeScalars.contains(where: { $0 != "\n" && $0.isEscapedInErrorLines }) else { return self }
        return split(separator: "\n", omittingEmptySubsequences: false)
            .map { String($0).escapingControlCharacters }
            .joined(separator: "\n")
    }
}

/// Prints a JSON document (an encoder's output): the control characters an encoder leaves raw inside
/// a string (DEL, C1 controls, U+2028, U+2029; C0 ones are escaped already) are written as JSON's own
/// `\uXXXX` escape, so the document stays the same JSON and sends no control sequence either. The
/// line feeds between the document's lines are kept.
func printJSONText(_ json: String, terminator: String = "\n") {
    guard json.unicodeScalars.contains(where: { $0 != "\n" && $0.isEscapedInErrorLines }) else {
        return Swift.print(json, terminator: terminator)
    }
    var out = ""
    out.reserveCapacity(json.utf8.count + 16)
    for scalar in json.unicodeScalars {
        if scalar != "\n" && scalar.isEscapedInErrorLines {
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    Swift.print(out, terminator: terminator)
}

/// Writes one line on stderr (a warning, a note, progress) with its control characters escaped as
/// `ZooOutput.printLine` writes stdout lines: a file name in a warning cannot move the terminal.
func printStandardError(_ line: String) {
    FileHandle.standardError.write(Data((line.escapingControlCharacters + "\n").utf8))
}
