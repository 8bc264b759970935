import Foundation

/// bissl's JSON conventions in one place: keys sorted (the same value always gives the same text),
/// slashes left unescaped (paths and dataset URIs stay readable), and the non-finite numbers JSON has no
/// literal for written as the strings "Infinity", "-Infinity" and "NaN" (a diverged run's NaN loss is
/// recorded, not a failure to encode), which `JSONDecoder.bissl()` reads back as numbers.
extension JSONEncoder {
    /// An encoder following the conventions above; `pretty` adds indentation and newlines.
    public static func bissl(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return encoder
    }
}

extension JSONDecoder {
    /// A decoder that reads what `JSONEncoder.bissl()` writes (the non-finite strings as numbers).
    public static func bissl() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return decoder
    }
}
