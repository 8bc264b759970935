/// Lowercase hexadecimal text of bytes: two digits per byte, in order, no separator
/// (`[0x0a, 0xff]` -> `"0aff"`). The one spelling bissl uses for digests: content ids
/// (schemas/checkpoint-v1.md), file and object SHA-256 (schemas/remote.md), dataset fingerprints.
public func lowercaseHex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
