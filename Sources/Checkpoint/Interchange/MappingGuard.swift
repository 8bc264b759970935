import Foundation

/// Turns the SIGBUS of a read past the end of a mapped file that shrank after it was mapped
/// (another process truncated or rewrote it while bissl read it) into bissl's usual failure: one
/// `error:` line on stderr naming the file, exit status 1, no temporary file left behind.
///
/// `MappedFile` registers each mapping here (address range and the line to print). The first
/// registration installs a SIGBUS handler (`sigaction` with `SA_SIGINFO`). The handler is
/// async-signal-safe (POSIX.1-2017 2.4.3): it compares the faulting address (`si_addr`) with a
/// fixed-size table allocated before installation; for an address inside a registered mapping it
/// unlinks the registered temporaries (`TemporaryFiles`), `write`s the line and calls `_exit(1)`.
/// A SIGBUS anywhere else gets the default disposition back and recurs when the faulting
/// instruction is restarted, so the process ends killed by SIGBUS as without the handler.
///
/// At most `capacity` mappings are guarded at once; one beyond that is simply not guarded.
enum MappingGuard {
    static let capacity = 64
    static let messageSize = Int(PATH_MAX) + 256

    struct Token {
        fileprivate let slot: Int
    }

    /// Guards `[base, base + size)`; `name` names the file in the error line. Nil when the table is full.
    static func register(base: UnsafeRawPointer, size: Int, name: String) -> Token? {
        let line = Array("error: \(name) changed while it was read (truncated or rewritten by another process); read it again\n".utf8)
            .prefix(messageSize - 1)
        let table = Table.shared
        table.lock.lock()
        defer { table.lock.unlock() }
        guard let slot = (0..<capacity).first(where: { table.used[$0] == 0 }) else { return nil }
        line.withUnsafeBufferPointer { source in
            (table.messages + slot * messageSize).update(from: source.baseAddress!, count: source.count)
        }
        table.lengths[slot] = line.count
        table.starts[slot] = UInt(bitPattern: base)
        table.ends[slot] = UInt(bitPattern: base) + UInt(size)
        table.used[slot] = 1   // published last: the handler reads only used slots
        return Token(slot: slot)
    }

    /// Whether `[start, end)` lies inside one guarded mapping.
    static func covers(_ start: UInt, _ end: UInt) -> Bool {
        let table = Table.shared
        table.lock.lock()
        defer { table.lock.unlock() }
        return (0..<capacity).contains { table.used[$0] != 0 && table.starts[$0] <= start && end <= table.ends[$0] }
    }

    /// Stops guarding a mapping (before it is unmapped).
    static func unregister(_ token: Token?) {
        guard let token else { return }
        let table = Table.shared
        table.lock.lock()
        table.used[token.slot] = 0
        table.lock.unlock()
    }

    /// The fixed table, allocated once; the handler is installed right after it exists.
    private final class Table: @unchecked Sendable {
        let starts = UnsafeMutablePointer<UInt>.allocate(capacity: MappingGuard.capacity)
        let ends = UnsafeMutablePointer<UInt>.allocate(capacity: MappingGuard.capacity)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: MappingGuard.capacity)
        let used = UnsafeMutablePointer<sig_atomic_t>.allocate(capacity: MappingGuard.capacity)
        let messages = UnsafeMutablePointer<UInt8>.allocate(capacity: MappingGuard.capacity * MappingGuard.messageSize)
        let lock = NSLock()

        static let shared: Table = {
            let table = Table()
            handlerTable = (table.starts, table.ends, table.lengths, table.used, table.messages)
            var action = sigaction()
            action.__sigaction_handler.sa_sigaction = busHandler
            action.sa_flags = SA_SIGINFO
            sigemptyset(&action.sa_mask)
            sigaction(SIGBUS, &action, nil)
            return table
        }()

        private init() {
            used.initialize(repeating: 0, count: MappingGuard.capacity)
            starts.initialize(repeating: 0, count: MappingGuard.capacity)
            ends.initialize(repeating: 0, count: MappingGuard.capacity)
            lengths.initialize(repeating: 0, count: MappingGuard.capacity)
        }
    }
}

// Raw pointers read by the signal handler (set once, before the handler is installed).
nonisolated(unsafe) private var handlerTable: (starts: UnsafeMutablePointer<UInt>, ends: UnsafeMutablePointer<UInt>,
                                               lengths: UnsafeMutablePointer<Int>, used: UnsafeMutablePointer<sig_atomic_t>,
                                               messages: UnsafeMutablePointer<UInt8>)?

/// SIGBUS handler: only async-signal-safe calls (`unlink` in `TemporaryFiles.unlinkAllInSignalHandler`,
/// `write`, `_exit`, `signal`).
private func busHandler(_ sig: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
    if let table = handlerTable, let info {
        let address = UInt(bitPattern: info.pointee._sifields._sigfault.si_addr)
        for slot in 0..<MappingGuard.capacity where table.used[slot] != 0 && table.starts[slot] <= address && address < table.ends[slot] {
            TemporaryFiles.unlinkAllInSignalHandler()
            _ = write(2, table.messages + slot * MappingGuard.messageSize, table.lengths[slot])
            _exit(1)
        }
    }
    signal(sig, SIG_DFL)   // not a guarded mapping: the fault recurs with the default action
}
