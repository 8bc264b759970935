import Foundation

/// Containment for libhdf5 on files bissl did not write itself.
///
/// libhdf5 is not hardened against hostile files: one or two corrupted metadata bytes can crash it
/// (global heap, selections, `free()` at close) or make it allocate gigabytes. A file that is not a
/// verified zoo object is therefore read by a child process: the same executable, started with
/// `helper` plus the read's arguments, which calls `enterChild(fileSize:)` before it opens the file,
/// reads it, and writes what it read to its standard output as a `SandboxMessage`. The child opens
/// the file only once its standard input ends (`start` lets a caller start it early). The parent
/// (`run`, `Started.finish`) checks that message before using it; a crash, a limit hit, or anything
/// that is not a well-formed message becomes one `SandboxError` line naming the file.
///
/// The child's limits (`Limits.forFile(bytes:)`): address space 1 GiB plus 4 bytes per byte of the
/// file beyond what the process maps when it starts reading (its executable, libraries and thread
/// stacks), CPU time 20 s plus 1 s per 10 MB, no file may be written or grown (`RLIMIT_FSIZE` 0), no
/// core dump, at most 64 open descriptors; its working directory is a fresh empty folder that is
/// removed afterwards, its standard input is a pipe the parent closes, its standard error is
/// `/dev/null`, HDF5 filter plugins are disabled (`HDF5_PLUGIN_PRELOAD=::`), and so is the Swift
/// runtime's backtracer (`SWIFT_BACKTRACE=enable=no`). The parent stops reading once the child has
/// exited and its output is drained, and takes its exit status from the kernel (`waitid`), whatever
/// the child left running holding its pipe or Foundation's socket. It reads at most the child's
/// address-space allowance (`Limits.output`) of output: the child builds its message whole before
/// writing it, so an honest one never sends more, and a child that does is killed.
public enum Sandbox {
    /// The executable and leading arguments that start a child read (`[bissl, "sandboxed-read"]`),
    /// set once by the program at start-up before any thread reads files; nil (library use, tests)
    /// reads in process.
    nonisolated(unsafe) public static var helper: [String]?

    /// Resource limits of one child read.
    public struct Limits: Equatable, Sendable {
        /// Address space the read may add to what the process maps when it starts (`RLIMIT_AS` is
        /// set to the sum), bytes.
        public var addressSpace: Int
        /// `RLIMIT_CPU`, seconds.
        public var cpuSeconds: Int

        /// The most output bytes the parent reads from the child: its address-space allowance, which
        /// bounds the message it builds in memory before writing it.
        public var output: Int { addressSpace }

        /// The limits for reading a file of `bytes` bytes (see `Sandbox`).
        public static func forFile(bytes: Int) -> Limits {
            let size = max(bytes, 0)
            return Limits(addressSpace: (1 << 30) + 4 * size, cpuSeconds: 20 + size / 10_000_000)
        }
    }

    /// Applies the child limits for a file of `fileSize` bytes to the calling process. Call it first
    /// thing in the child, before the file is opened.
    /// - Throws: `SandboxError` when a limit cannot be set.
    public static func enterChild(fileSize: Int) throws {
        let limits = Limits.forFile(bytes: fileSize)
        let settings: [(Int32, UInt64, String)] = [
            (Int32(RLIMIT_AS.rawValue), UInt64(mappedBytes() + limits.addressSpace), "address space"),
            (Int32(RLIMIT_CPU.rawValue), UInt64(limits.cpuSeconds), "CPU time"),
            (Int32(RLIMIT_FSIZE.rawValue), 0, "file size"),
            (Int32(RLIMIT_CORE.rawValue), 0, "core size"),
            (Int32(RLIMIT_NOFILE.rawValue), 64, "open files"),
        ]
        for (resource, value, name) in settings {
            var limit = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
            guard setrlimit(__rlimit_resource_t(UInt32(resource)), &limit) == 0 else {
                throw SandboxError("cannot limit the \(name) of the HDF5 reader process (errno \(errno))")
            }
        }
    }

    /// The calling process's virtual size (`/proc/self/statm`, first field, in pages); 0 if unknown.
    static func mappedBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Starts `helper + arguments` and returns its message.
    /// - Parameters:
    ///   - fileName: the file read, for error messages.
    ///   - fileSize: its size in bytes, which sets the limit on the child's output (`Limits.output`).
    /// - Throws: `SandboxError` when no helper is set, the child cannot start, ends by a signal or
    ///   limit, writes more than `Limits.output` bytes, or anything but one well-formed message.
    public static func run(_ arguments: [String], fileName: String, fileSize: Int) throws -> SandboxMessage {
        try start(arguments, fileName: fileName).finish(fileSize: fileSize)
    }

    /// Starts `helper + arguments` now and lets it read only when `Started.finish()` is called: the
    /// child starts (executable loaded, runtime initialized) while the caller is still producing the
    /// file, such as a download, and then waits for the end of its standard input before it opens
    /// the file.
    /// - Throws: `SandboxError` when no helper is set or the child cannot start.
    public static func start(_ arguments: [String], fileName: String) throws -> Started {
        guard let helper, let executable = helper.first else { throw SandboxError("no HDF5 reader process is configured") }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bissl-sandbox-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw SandboxError("cannot create a scratch folder for the HDF5 reader process: \(error.localizedDescription)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(helper.dropFirst()) + arguments
        process.currentDirectoryURL = scratch
        var environment = ProcessInfo.processInfo.environment
        environment["HDF5_PLUGIN_PRELOAD"] = "::"
        // A crash is reported by its signal alone: the Swift runtime's backtracer would start a
        // `swift-backtrace` process that inherits the output pipe and can outlive the child.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let output = Pipe(), go = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = go
        do {
            try process.run()
        } catch {
            try? FileManager.default.removeItem(at: scratch)
            throw SandboxError("cannot start the HDF5 reader process for \(fileName): \(error.localizedDescription)")
        }
        return Started(process: process, output: output, go: go, scratch: scratch, fileName: fileName)
    }

    /// Reads `descriptor` to its end, or, once `hasEnded()` says its writer has exited, to what the
    /// writer left in it: a process the writer started (a crash handler's helper, a command left in
    /// the background) may hold the pipe open long after the writer ended, and the read must not
    /// wait for it. `hasEnded` is asked whenever nothing arrives for 100 ms. A signal interrupting a
    /// read or the wait (`EINTR`) is not a failure: a handler installed without `SA_RESTART`
    /// (libFuzzer's timer, a library's) must not turn a slow child into one, and Foundation's
    /// `readDataToEndOfFile()` stops the process on `EINTR`.
    /// - Parameter limit: the most bytes read; one more is `OutputLimitExceeded`, before it is kept.
    /// - Throws: `POSIXError` for any other read error, `OutputLimitExceeded` past `limit`.
    static func readToEnd(_ descriptor: Int32, limit: Int, hasEnded: () -> Bool) throws -> Data {
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var ended = false
        while true {
            if !ended {
                var wait = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                let ready = poll(&wait, 1, 100)
                if ready < 0, errno != EINTR { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
                if ready == 0, hasEnded() {
                    // Everything the writer wrote is in the pipe now: read it without waiting.
                    ended = true
                    _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
                }
                if ready <= 0 { continue }
            }
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n > 0 {
                guard n <= limit - data.count else { throw OutputLimitExceeded() }
                data.append(contentsOf: chunk[..<n])
            } else if n == 0 || (ended && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return data
            } else if errno != EINTR {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
        }
    }

    /// The child wrote more than the parent reads.
    struct OutputLimitExceeded: Error {}

    /// How a child process ended, read with `waitid(WNOWAIT)`, which leaves it for Foundation's
    /// `Process` to collect: Foundation learns of the exit only once every holder of a socket the
    /// child inherited has closed it, which a process the child left running may never do.
    enum Ending: Equatable {
        case running
        case exited(Int32)
        case signalled(Int32)
        /// Already collected by Foundation: ask the `Process`.
        case collected
    }

    /// How `pid` ended; `.running` only when `wait` is false and it has not ended yet.
    static func ending(of pid: pid_t, wait: Bool) -> Ending {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT | (wait ? 0 : WNOHANG)) != 0 {
            guard errno == EINTR else { return .collected }
        }
        let child = info._sifields._sigchld
        if child.si_pid == 0 { return .running }
        return info.si_code == CLD_EXITED ? .exited(child.si_status) : .signalled(child.si_status)
    }

    /// A started child read, waiting for `finish()`; one that is never finished is killed when
    /// released.
    public final class Started {
        private let process: Process
        private let output: Pipe
        private let go: Pipe
        private let scratch: URL
        private let fileName: String
        private var done = false

        fileprivate init(process: Process, output: Pipe, go: Pipe, scratch: URL, fileName: String) {
            self.process = process
            self.output = output
            self.go = go
            self.scratch = scratch
            self.fileName = fileName
        }

        /// Lets the child read (closes its standard input) and returns its message.
        /// - Parameter fileSize: the size of the file read, bytes (sets `Limits.output`).
        /// - Throws: `SandboxError` when the child ends by a signal or limit, writes more than
        ///   `Limits.output` bytes (it is killed), or anything but one well-formed message.
        public func finish(fileSize: Int) throws -> SandboxMessage {
            precondition(!done, "a started child read is finished once")
            done = true
            defer { try? FileManager.default.removeItem(at: scratch) }
            try? go.fileHandleForWriting.close()
            let pid = process.processIdentifier
            let data: Data
            let limit = Limits.forFile(bytes: fileSize).output
            do {
                data = try Sandbox.readToEnd(output.fileHandleForReading.fileDescriptor, limit: limit) {
                    Sandbox.ending(of: pid, wait: false) != .running
                }
            } catch is OutputLimitExceeded {
                kill(pid, SIGKILL)
                throw SandboxError("\(fileName): the HDF5 reader process wrote more than \(limit) bytes (its memory limit); the file is damaged or hostile")
            } catch {
                kill(pid, SIGKILL)
                throw SandboxError("\(fileName): cannot read the output of the HDF5 reader process (\(error))")
            }
            var ending = Sandbox.ending(of: pid, wait: true)
            if ending == .collected {
                process.waitUntilExit()
                ending = process.terminationReason == .uncaughtSignal ? .signalled(process.terminationStatus) : .exited(process.terminationStatus)
            }
            if case .signalled(let signal) = ending {
                let what: String
                switch signal {
                case SIGXCPU, SIGKILL: what = "ran past its CPU time limit"
                case SIGSEGV, SIGBUS: what = "crashed (signal \(signal))"
                case SIGABRT, SIGTRAP, SIGILL: what = "stopped (signal \(signal); out of memory or a failed check)"
                default: what = "was killed by signal \(signal)"
                }
                throw SandboxError("\(fileName): the HDF5 library \(what) reading this file; it is damaged or hostile")
            }
            guard let message = try? SandboxMessage(decoding: data) else {
                let status: Int32 = if case .exited(let code) = ending { code } else { -1 }
                throw SandboxError(
                    "\(fileName): the HDF5 reader process ended (status \(status)) without a result; the file is damaged or hostile")
            }
            return message
        }

        deinit {
            guard !done else { return }
            // Killed before it reads anything; not waited for (Foundation's `waitUntilExit` may
            // miss the exit of a child signalled right after it started), the kernel reaps it
            // when this process ends.
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try? go.fileHandleForWriting.close()
            try? FileManager.default.removeItem(at: scratch)
        }
    }
}

/// A failure of the HDF5 reader process. One line, naming the file.
public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What a child read hands back: a JSON header (its own schema per reader, or an error) and byte
/// blobs (tensor data, pixels) referred to by index.
///
/// Layout: the 8 bytes `BISSLSB1`, the header length (UInt64 little-endian), the header (UTF-8
/// JSON), the blob count (UInt64 LE), then per blob its length (UInt64 LE) and its bytes. Decoding
/// checks every length against the bytes actually received before slicing.
public struct SandboxMessage: Sendable {
    public static let magic = Data("BISSLSB1".utf8)

    public var header: Data
    public var blobs: [Data]

    public init(header: Data, blobs: [Data]) {
        self.header = header
        self.blobs = blobs
    }

    /// Parses a message.
    /// - Throws: `SandboxError` when `data` is not exactly one well-formed message.
    public init(decoding data: Data) throws {
        var offset = data.startIndex
        func take(_ n: UInt64) throws -> Data {
            guard n <= UInt64(data.endIndex - offset) else { throw SandboxError("sandbox message is cut short") }
            defer { offset += Int(n) }
            return data[offset..<(offset + Int(n))]
        }
        func length() throws -> UInt64 {
            try take(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        guard try take(UInt64(Self.magic.count)) == Self.magic else { throw SandboxError("not a sandbox message") }
        header = try take(try length())
        let count = try length()
        // Every blob costs at least its 8-byte length: a larger count cannot be honest.
        guard count <= UInt64(data.endIndex - offset) / 8 else { throw SandboxError("sandbox message is cut short") }
        blobs = []
        blobs.reserveCapacity(Int(count))
        for _ in 0..<count { blobs.append(try take(try length())) }
        guard offset == data.endIndex else { throw SandboxError("sandbox message has trailing bytes") }
    }

    /// Writes the message to `handle` piece by piece (blobs are not copied into one buffer).
    public func write(to handle: FileHandle) throws {
        func length(_ n: Int) -> Data { withUnsafeBytes(of: UInt64(n).littleEndian) { Data($0) } }
        try handle.write(contentsOf: Self.magic + length(header.count) + header + length(blobs.count))
        for blob in blobs {
            try handle.write(contentsOf: length(blob.count))
            try handle.write(contentsOf: blob)
        }
    }
}
