/// Reversible mapping between state-dict keys (or component / head / metric names) and HDF5 link
/// names, as schemas/checkpoint-v1.md ("Name escaping") defines it.
///
/// Bytes `%` and `/` become `%25` and `%2F`; the whole name `.` becomes `%2E` and the empty
/// name `%`. Dots inside keys (`layer1.0.conv1.weight`) stay as they are.
enum LinkName {
    /// The HDF5 link name for `key`.
    static func escape(_ key: String) -> String {
        if key.isEmpty { return "%" }
        if key == "." { return "%2E" }
        guard key.utf8.contains(where: { $0 == 0x25 || $0 == 0x2F }) else { return key }
        var out = [UInt8]()
        out.reserveCapacity(key.utf8.count + 6)
        for byte in key.utf8 {
            switch byte {
            case 0x25: out += Array("%25".utf8)
            case 0x2F: out += Array("%2F".utf8)
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The key a link name stands for; nil when `name` is not a valid escaped name.
    static func unescape(_ name: String) -> String? {
        if name == "%" { return "" }
        guard name.utf8.contains(0x25) else { return name }
        let bytes = Array(name.utf8)
        var out = [UInt8]()
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x25 {
                guard i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) else { return nil }
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}
