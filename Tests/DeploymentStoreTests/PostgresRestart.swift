import DeployCore
@testable import DeploymentStore
import Foundation
import Testing

/// Cases that take the Postgres server or a connection away under a live store.
enum PostgresRestart {
    static let bin = ProcessInfo.processInfo.environment["PG_BIN"] ?? "/usr/lib/postgresql/15/bin"

    @discardableResult
    static func run(_ argv: [String], asPostgres: Bool = false) throws -> String {
        let p = Process()
        var args = argv
        if asPostgres, getuid() == 0 { args = ["/usr/sbin/runuser", "-u", "postgres", "--"] + args }
        if asPostgres {
            // The restarted server is a daemon: close every inherited descriptor above 2 first, so it cannot keep
            // the write end of this (or another test's) pipe open and hang a reader forever.
            args = ["/bin/bash", "-c", #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-"; fi; done; exec "$@""#, "sh"] + args
        }
        p.executableURL = URL(fileURLWithPath: args[0])
        p.arguments = Array(args.dropFirst())
        let out = Pipe()
        p.standardOutput = asPostgres ? FileHandle.nullDevice : out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = asPostgres ? Data() : out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        struct Failed: Error, CustomStringConvertible { var description: String }
        guard p.terminationStatus == 0 else { throw Failed(description: "\(args) exited \(p.terminationStatus): \(text)") }
        return text
    }

    static func psql(_ sql: String) throws -> String {
        try run(["\(bin)/psql", testPostgresURL!, "-XAtc", sql])
    }

    static func restartMidSession() throws {
        let db = try TestDatabase(.postgres)
        defer { db.cleanUp() }
        let store = try #require(try db.makeStore() as? PostgresStore)
        let r = sampleRecord()
        try store.insert(r, event: planEvent())
        let before = try store.backendPID()
        let dataDir = try psql("SHOW data_directory")
        // Output to a file: the restarted server must not hold our pipe open.
        try run(["\(bin)/pg_ctl", "-D", dataDir, "-l", dataDir + "/restart.log", "-m", "fast", "-w", "restart"], asPostgres: true)
        // The next call (a write) reconnects and succeeds; nothing written before is lost.
        let approved = try store.transition(
            id: r.deploymentId, from: .planned, to: .approved, changes: .init(approvedBy: "bob"), event: planEvent(at: instant(1)))
        #expect(approved.status == .approved && approved.approvedBy == "bob")
        #expect(try store.backendPID() != before)
        #expect(try store.events(deploymentId: r.deploymentId).map(\.seq) == [1, 2])
        #expect(try store.query(HistoryQuery()).deployments.map(\.deploymentId) == [r.deploymentId])
    }

    static func killedConnection() throws {
        let db = try TestDatabase(.postgres)
        defer { db.cleanUp() }
        let store = try #require(try db.makeStore() as? PostgresStore)
        let r = sampleRecord()
        try store.insert(r, event: planEvent())
        let pid = try store.backendPID()
        #expect(try psql("SELECT pg_terminate_backend(\(pid))") == "t")
        let e = try store.appendEvent(DeploymentEvent(deploymentId: r.deploymentId, at: instant(1), step: "s", actor: "a", message: "after"))
        #expect(e.seq == 2)
        #expect(try store.events(deploymentId: r.deploymentId).map(\.message) == ["planned", "after"])
        #expect(try store.backendPID() != pid)
    }
}
