import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Flat reading of the XML documents S3 answers with (ListBucketResult, ListMultipartUploadsResult,
/// InitiateMultipartUploadResult, Error): every element named `record` becomes a dictionary of its
/// child elements' texts; elements outside any record are collected in `top`.
final class XMLRecords: NSObject, XMLParserDelegate {
    private let record: String
    private(set) var records: [[String: String]] = []
    private(set) var top: [String: String] = [:]
    private var current: [String: String]?
    private var text = ""

    /// Parses `data`; records are elements named `record` (e.g. `Contents`, `Upload`).
    init(_ data: Data, record: String) {
        self.record = record
        super.init()
        let parser = XMLParser(data: data)
        parser.delegate = self
        parser.parse()
    }

    /// True when the listing answered with its keys URL-encoded (`<EncodingType>url</EncodingType>`,
    /// the answer to `encoding-type=url`): XML 1.0 cannot carry control characters such as ESC, so a
    /// key holding one would otherwise arrive altered (a server sends U+FFFD) and name another key.
    var urlEncoded: Bool { top["EncodingType"]?.lowercased() == "url" }

    /// `text` as the listing means it: with `urlEncoded`, form-decoded as the S3 API reference's
    /// `encoding-type=url` elements are (ListObjectsV2: `Key`, `Prefix`, `StartAfter`, `Delimiter`;
    /// ListMultipartUploads: also `KeyMarker`, `NextKeyMarker`), `%XX` to its byte and `+` to a space,
    /// as boto3 decodes them; otherwise unchanged. Continuation tokens are opaque and never decoded.
    func listed(_ text: String) -> String {
        urlEncoded ? Self.formDecoded(text) : text
    }

    /// `%XX` to byte XX and `+` to a space; a `%` not followed by two hex digits stays as it is.
    /// Bytes that are not UTF-8 become U+FFFD (S3 keys are UTF-8).
    static func formDecoded(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 0x30...0x39: return b - 0x30
            case 0x41...0x46: return b - 0x41 + 10
            case 0x61...0x66: return b - 0x61 + 10
            default: return nil
            }
        }
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x25, i + 2 < bytes.count, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i] == 0x2B ? 0x20 : bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The text of the first element named `name` anywhere in `data`.
    static func firstValue(_ name: String, in data: Data) -> String? {
        XMLRecords(data, record: "\u{0}").top[name]
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        if elementName == record { current = [:] }
        text = ""
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        if elementName == record, let done = current {
            records.append(done)
            current = nil
        } else if current != nil {
            if current![elementName] == nil { current![elementName] = text }
        } else if top[elementName] == nil {
            top[elementName] = text
        }
        text = ""
    }
}
