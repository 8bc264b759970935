import CCurl
import Checkpoint
import Foundation

/// One HTTP exchange's result.
struct HTTPResponse {
    /// HTTP status code (200, 404, 412, ...).
    var status: Int
    /// Response headers, names lowercased (the last value when a header repeats).
    var headers: [String: String]
    /// The body when it was collected in memory (empty when written to a file).
    var body: Data

    /// The `ETag` header with its quotes, as `If-Match` wants it back.
    var etag: String? { headers["etag"] }
    /// The S3 error `<Code>` of an error body (`NoSuchKey`, `PreconditionFailed`, ...).
    var errorCode: String? { XMLRecords.firstValue("Code", in: body) }
    var errorMessage: String? { XMLRecords.firstValue("Message", in: body) }
}

/// The body of a request.
enum RequestBody {
    case none
    case data(Data)
    /// `length` bytes of the file at `path` from byte `offset` (a multipart part, or the whole file).
    case file(path: String, offset: Int64, length: Int64)

    var length: Int64 {
        switch self {
        case .none: return 0
        case .data(let d): return Int64(d.count)
        case .file(_, _, let length): return length
        }
    }
}

/// A minimal S3 REST client (the S3 API reference's PutObject, GetObject, HeadObject, DeleteObject,
/// ListObjectsV2, CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload,
/// ListMultipartUploads) on libcurl, which also signs every request (AWS Signature Version 4 through
/// `CURLOPT_AWS_SIGV4`, payload sent as `UNSIGNED-PAYLOAD`). One client holds one curl handle, so
/// requests reuse the HTTP connection. One thread at a time may use a client (`RemoteStore.parallel`
/// gives each worker its own), hence `@unchecked Sendable`.
///
/// Addressing: with an endpoint (`--endpoint http://127.0.0.1:8333`), path style
/// `<endpoint>/<bucket>/<key>`; without one, AWS virtual-hosted style
/// `https://<bucket>.s3.<region>.amazonaws.com/<key>` (path style for bucket names holding dots).
final class S3Client: @unchecked Sendable {
    let bucket: String
    let region: String
    let credentials: S3Credentials?
    private let base: String
    private let handle: UnsafeMutableRawPointer
    /// Attempts for a request that failed in transport or with a 5xx status (then 0.2 s, 0.6 s, ... apart).
    var attempts = 3
    /// Bytes per second this connection sends or receives at most (`CURLOPT_MAX_SEND_SPEED_LARGE`,
    /// `CURLOPT_MAX_RECV_SPEED_LARGE`); nil for no limit.
    var maxRate: Int64?
    /// Bytes of a response body kept in memory at most (bodies a `sink` takes are not counted): a
    /// longer answer breaks the request off with `ZooError.corrupt`, not retried. 256 MiB, the
    /// largest document of the layout (an index shard, schemas/remote.md).
    var maxBody = 256 << 20

    /// A response body longer than the request's own `maxBody` (the transfer was broken off there).
    struct BodyTooLarge: Error { var limit: Int }

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    /// - Throws: `ZooError.invalid` for an endpoint that is not an http(s) URL.
    init(bucket: String, region: String, endpoint: String?, credentials: S3Credentials?) throws {
        _ = Self.globalInit
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        if let endpoint {
            guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
                throw ZooError.invalid("endpoint '\(endpoint)' is not an http:// or https:// URL")
            }
            var trimmed = endpoint
            while trimmed.hasSuffix("/") { trimmed.removeLast() }
            base = trimmed + "/" + Self.encode(bucket)
        } else if bucket.contains(".") {
            base = "https://s3.\(region).amazonaws.com/" + Self.encode(bucket)
        } else {
            base = "https://\(bucket).s3.\(region).amazonaws.com"
        }
        guard let h = curl_easy_init() else { throw ZooError.io("libcurl could not start (curl_easy_init failed)") }
        handle = h
    }

    deinit { curl_easy_cleanup(handle) }

    /// A printable URL of `key` (for messages).
    func url(_ key: String) -> String { base + "/" + Self.encode(key, keepSlash: true) }

    /// Sends one request and returns the response, whatever its status.
    /// - Parameters:
    ///   - key: the object key, nil for the bucket itself (listing).
    ///   - query: query parameters (sent sorted and RFC 3986-encoded, as SigV4's canonical query wants).
    ///   - headers: extra headers (`If-None-Match`, `If-Match`, `x-amz-meta-*`).
    ///   - sink: receives a 2xx response body piece by piece instead of memory (returns false to
    ///     break the transfer off); a download is not retried here: its caller knows what arrived.
    ///   - progress: called with the bytes sent or received so far of this request.
    ///   - maxBody: bytes of the response body kept in memory at most for this request (default: the
    ///     client's `maxBody`); a longer body throws `BodyTooLarge` (not retried).
    /// - Throws: `ZooError.io` when the server cannot be reached or the transfer breaks off
    ///   (after `attempts` tries for transport failures and 5xx answers).
    func send(_ method: String, _ key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
              body: RequestBody = .none, sink: ((UnsafeRawBufferPointer) -> Bool)? = nil,
              progress: ((Int64) -> Void)? = nil, maxBody: Int? = nil) throws -> HTTPResponse {
        var delay = 0.2
        var attempt = 1
        while true {
            do {
                let response = try perform(method, key, query: query, headers: headers, body: body, sink: sink, progress: progress, maxBody: maxBody)
                if response.status >= 500 && attempt < attempts && sink == nil {
                    attempt += 1
                } else {
                    return response
                }
            } catch let error as ZooError {
                // A download already delivered part of its body: its caller resumes it. An oversized
                // answer (`.corrupt`) would come again.
                if case .corrupt = error { throw error }
                if attempt >= attempts || sink != nil { throw error }
                attempt += 1
            }
            Thread.sleep(forTimeInterval: delay)
            delay *= 3
        }
    }

    private final class Transfer {
        var headers: [String: String] = [:]
        var body = Data()
        var upload: Data = Data()
        var uploadOffset = 0
        var file: UnsafeMutablePointer<FILE>?
        var fileRemaining: Int64 = 0
        var sink: ((UnsafeRawBufferPointer) -> Bool)?
        var progress: ((Int64) -> Void)?
        var uploading = false
        var limit = 0
        var overflowed = false
    }

    private func perform(_ method: String, _ key: String?, query: [(String, String)], headers: [String: String],
                         body: RequestBody, sink: ((UnsafeRawBufferPointer) -> Bool)?, progress: ((Int64) -> Void)?, maxBody requestLimit: Int?) throws -> HTTPResponse {
        curl_easy_reset(handle)
        let transfer = Transfer()
        transfer.sink = sink
        transfer.progress = progress
        transfer.limit = requestLimit ?? maxBody
        var url = key.map { self.url($0) } ?? base + "/"
        if !query.isEmpty {
            url += "?" + query.sorted { $0.0 < $1.0 }.map { Self.encode($0.0) + "=" + Self.encode($0.1) }.joined(separator: "&")
        }
        var list: UnsafeMutablePointer<curl_slist>?
        var all = headers
        all["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        if let token = credentials?.sessionToken { all["x-amz-security-token"] = token }
        for (name, value) in all.sorted(by: { $0.key < $1.key }) {
            list = curl_slist_append(list, value.isEmpty ? "\(name):" : "\(name): \(value)")
        }
        defer { curl_slist_free_all(list) }
        var opened: UnsafeMutablePointer<FILE>?
        defer { if let opened { fclose(opened) } }

        bissl_curl_set_string(handle, CURLOPT_URL, url)
        bissl_curl_set_slist(handle, CURLOPT_HTTPHEADER, list)
        bissl_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT, 10)
        // A stalled transfer (a server that stopped answering) fails after 30 s below 1 byte/s.
        bissl_curl_set_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1)
        bissl_curl_set_long(handle, CURLOPT_LOW_SPEED_TIME, 30)
        bissl_curl_set_long(handle, CURLOPT_NOSIGNAL, 1)
        // Send bodies at once instead of waiting for `100 Continue` (an `Expect:` header of our own
        // would be signed but not sent, which breaks the SigV4 signature).
        bissl_curl_set_long(handle, CURLOPT_EXPECT_100_TIMEOUT_MS, 0)
        // Received bytes reach the sink in pieces of up to 512 KiB instead of libcurl's default
        // 16 KiB: a 100 MB download makes 200 sink calls (a `pwrite` and a lock each), not 6,400.
        // A rate-limited transfer keeps the default, which paces it more evenly.
        if maxRate == nil { bissl_curl_set_long(handle, CURLOPT_BUFFERSIZE, 512 * 1024) }
        if let maxRate {
            bissl_curl_set_off(handle, CURLOPT_MAX_SEND_SPEED_LARGE, curl_off_t(maxRate))
            bissl_curl_set_off(handle, CURLOPT_MAX_RECV_SPEED_LARGE, curl_off_t(maxRate))
        }
        if let credentials {
            bissl_curl_set_string(handle, CURLOPT_AWS_SIGV4, "aws:amz:\(region):s3")
            bissl_curl_set_string(handle, CURLOPT_USERNAME, credentials.accessKeyID)
            bissl_curl_set_string(handle, CURLOPT_PASSWORD, credentials.secretAccessKey)
        }
        switch method {
        case "HEAD": bissl_curl_set_long(handle, CURLOPT_NOBODY, 1)
        case "GET": break
        default: bissl_curl_set_string(handle, CURLOPT_CUSTOMREQUEST, method)
        }
        switch body {
        case .none:
            if method == "PUT" || method == "POST" {
                bissl_curl_set_long(handle, CURLOPT_UPLOAD, 1)
                bissl_curl_set_off(handle, CURLOPT_INFILESIZE_LARGE, 0)
            }
        case .data(let data):
            transfer.upload = data
            bissl_curl_set_long(handle, CURLOPT_UPLOAD, 1)
            bissl_curl_set_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(data.count))
        case .file(let path, let offset, let length):
            guard let f = fopen(path, "rb") else {
                throw ZooError.io("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            opened = f
            guard fseeko(f, off_t(offset), SEEK_SET) == 0 else {
                throw ZooError.io("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            transfer.file = f
            transfer.fileRemaining = length
            bissl_curl_set_long(handle, CURLOPT_UPLOAD, 1)
            bissl_curl_set_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(length))
        }
        transfer.uploading = body.length > 0
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        bissl_curl_set_pointer(handle, CURLOPT_READDATA, context)
        bissl_curl_set_read(handle) { buffer, size, count, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let room = size * count
            if let f = t.file {
                let n = min(Int64(room), t.fileRemaining)
                guard n > 0 else { return 0 }
                let read = fread(buffer, 1, Int(n), f)
                t.fileRemaining -= Int64(read)
                return read == 0 && ferror(f) != 0 ? Int(CURL_READFUNC_ABORT) : read
            }
            let n = min(room, t.upload.count - t.uploadOffset)
            if n > 0 {
                t.upload.withUnsafeBytes { raw in
                    buffer!.update(from: raw.baseAddress!.advanced(by: t.uploadOffset).assumingMemoryBound(to: CChar.self), count: n)
                }
                t.uploadOffset += n
            }
            return n
        }
        bissl_curl_set_pointer(handle, CURLOPT_WRITEDATA, context)
        bissl_curl_set_write(handle) { buffer, size, count, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let n = size * count
            if let sink = t.sink {
                return sink(UnsafeRawBufferPointer(start: buffer, count: n)) ? n : 0
            }
            guard t.body.count + n <= t.limit else {
                t.overflowed = true
                return 0
            }
            t.body.append(UnsafeRawPointer(buffer!).assumingMemoryBound(to: UInt8.self), count: n)
            return n
        }
        bissl_curl_set_pointer(handle, CURLOPT_HEADERDATA, context)
        bissl_curl_set_header(handle) { buffer, size, count, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let n = size * count
            let line = String(decoding: UnsafeRawBufferPointer(start: UnsafeRawPointer(buffer), count: n), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                t.headers = [:]  // a new response (after a redirect or 100 Continue)
                // Error bodies of a download go to memory, 2xx bodies to the file.
                if let code = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }), !(200..<300).contains(code) {
                    t.sink = nil
                }
            } else if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                t.headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return n
        }
        if progress != nil {
            bissl_curl_set_long(handle, CURLOPT_NOPROGRESS, 0)
            bissl_curl_set_pointer(handle, CURLOPT_XFERINFODATA, context)
            bissl_curl_set_progress(handle) { user, _, received, _, sent in
                let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
                t.progress?(Int64(t.uploading ? sent : received))
                return 0
            }
        }
        let code = curl_easy_perform(handle)
        if transfer.overflowed, let requestLimit { throw BodyTooLarge(limit: requestLimit) }
        if transfer.overflowed {
            throw ZooError.corrupt("\(method) \(url) answered with more than \(maxBody >> 20) MiB, more than any document of a bissl remote")
        }
        guard code == CURLE_OK else {
            throw ZooError.io("\(method) \(url): \(String(cString: curl_easy_strerror(code)))")
        }
        var status = 0
        bissl_curl_response_code(handle, &status)
        return HTTPResponse(status: status, headers: transfer.headers, body: transfer.body)
    }

    /// RFC 3986 percent-encoding of everything but unreserved characters (and `/` when `keepSlash`),
    /// as SigV4's canonical URI and query require.
    static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, 0x2D, 0x2E, 0x5F, 0x7E: out.unicodeScalars.append(UnicodeScalar(byte))
            case 0x2F where keepSlash: out.append("/")
            default: out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}
