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
