import DeployCore
@testable import DeploymentStore
import Foundation
import JSON
import Testing

/// The hash chain over events, on every ledger that stores it: each write links its event to the one
/// before in the same transaction, and an edit made to the database afterwards shows at that event.
enum EventChainConformance {
    static func raw(_ store: any DeploymentStore, _ body: @escaping (any SQLConnection) throws -> Void) throws {
        switch store {
        case let s as SQLiteStore: try s.withWriteTransaction(body)
        case let s as PostgresStore: try s.withWriteTransaction(body)
        default: Issue.record("no raw access to \(store)")
        }
    }

    /// A deployment with five events written the three ways a store appends them, data with numbers included.
    static func history(_ store: any DeploymentStore) throws -> DeploymentRecord {
        let r = sampleRecord(status: .awaitingApproval, at: instant(0))
        try store.insert(r, event: planEvent(at: instant(0)))
        var cur = try store.transition(id: r.deploymentId, from: .awaitingApproval, to: .approved, changes: .init(approvedBy: "bob"),
                                       event: DeploymentEvent(deploymentId: r.deploymentId, at: instant(1), step: "gate:deploy", actor: "bob", message: "approved",
                                                              data: ["signature": ["principal": "bob", "message": "{\"a\":1}"]]))
        try store.appendEvent(DeploymentEvent(deploymentId: r.deploymentId, at: instant(2), step: "bake", actor: "model-deployer", message: "window 1",
                                              data: ["p95_ms": 12.25, "error_rate": 1e-7, "requests": 1000, "big": 1e20, "whole": 5.0]))
        cur = try store.transition(id: r.deploymentId, from: cur.status, to: .deploying, changes: .init(), event: DeploymentEvent(
            deploymentId: r.deploymentId, at: instant(3), step: "execute", actor: "ci", message: "ünïcødé ✓ \"quoted\"\n"))
        try store.appendEvent(DeploymentEvent(deploymentId: r.deploymentId, at: instant(4), step: "note", actor: "x", message: "tab\there"))
        return r
    }

    static func chainedWritesVerify(_ kind: StoreKind) throws {
        try Conformance.withDatabase(kind) { _, store in
            let r = try history(store)
            let events = try store.events(deploymentId: r.deploymentId)
            #expect(events.map(\.seq) == [1, 2, 3, 4, 5])
            #expect(events.allSatisfy { $0.hash?.utf8.count == 64 })
            #expect(events.first?.prevHash == "")
            #expect(zip(events.dropFirst(), events).allSatisfy { $0.prevHash == $1.hash })
            let report = EventChain.verify(events)
            #expect(report == ChainReport(verified: true, brokenAtSeq: nil, note: nil, head: events.last?.hash))
            // History with events reads the same links.
            let page = try store.query(HistoryQuery(includeEvents: true))
            #expect(EventChain.verify(page.events[r.deploymentId] ?? []).verified)
        }
    }

    static func anEditShowsAtThatEvent(_ kind: StoreKind) throws {
        try Conformance.withDatabase(kind) { _, store in
            let r = try history(store)
            let other = sampleRecord(model: "other", status: .planned, at: instant(10))
            try store.insert(other, event: planEvent(at: instant(10)))
            let id = r.deploymentId
            // Someone rewrites who approved (event 2) straight in the database.
            try raw(store) { c in
                _ = try c.execute("UPDATE ml_deployment_events SET actor = 'mallory' WHERE deployment_id = $1 AND seq = 2", [.text(id)])
            }
            let report = EventChain.verify(try store.events(deploymentId: id))
            #expect(!report.verified)
            #expect(report.brokenAtSeq == 2)
            #expect(report.head == (try store.events(deploymentId: id))[0].hash)
            // The other deployment's chain is untouched.
            #expect(EventChain.verify(try store.events(deploymentId: other.deploymentId)).verified)
            // A number in the data of event 3, and a deleted event 4.
            try raw(store) { c in
                _ = try c.execute("UPDATE ml_deployment_events SET actor = 'bob' WHERE deployment_id = $1 AND seq = 2", [.text(id)])
                let data = c.dialect == .postgres ? "jsonb_set(data, '{requests}', '999')" : "json_set(data, '$.requests', 999)"
                _ = try c.execute("UPDATE ml_deployment_events SET data = \(data) WHERE deployment_id = $1 AND seq = 3", [.text(id)])
            }
            #expect(EventChain.verify(try store.events(deploymentId: id)).brokenAtSeq == 3)
            try raw(store) { c in
                let data = c.dialect == .postgres ? "jsonb_set(data, '{requests}', '1000')" : "json_set(data, '$.requests', 1000)"
                _ = try c.execute("UPDATE ml_deployment_events SET data = \(data) WHERE deployment_id = $1 AND seq = 3", [.text(id)])
            }
            #expect(EventChain.verify(try store.events(deploymentId: id)).verified)
            try raw(store) { c in
                _ = try c.execute("DELETE FROM ml_deployment_events WHERE deployment_id = $1 AND seq = 4", [.text(id)])
            }
            #expect(EventChain.verify(try store.events(deploymentId: id)).brokenAtSeq == 4)
        }
    }

    /// A ledger from before the chain: its rows stay unhashed, new events chain from the migration on,
    /// and the report says which events the chain does not cover.
    static func existingLedgersMigrate(_ kind: StoreKind) throws {
        try Conformance.withDatabase(kind) { db, store in
            let r = sampleRecord(status: .awaitingApproval, at: instant(0))
            try store.insert(r, event: planEvent(at: instant(0)))
            try store.appendEvent(DeploymentEvent(deploymentId: r.deploymentId, at: instant(1), step: "note", actor: "x", message: "old"))
            // Back to schema 1, as an agent of the first slice left it.
            try raw(store) { c in
                _ = try c.execute("ALTER TABLE ml_deployment_events DROP COLUMN hash", [])
                _ = try c.execute("ALTER TABLE ml_deployment_events DROP COLUMN prev_hash", [])
                _ = try c.execute("DELETE FROM schema_migrations WHERE version = 2", [])
            }
            let upgraded = try db.makeStore()
            try upgraded.migrate()
            let old = try upgraded.events(deploymentId: r.deploymentId)
            #expect(old.allSatisfy { $0.hash == nil })
            let before = EventChain.verify(old)
            #expect(before.verified && before.note?.contains("none of the 2 events") == true)
            try upgraded.transition(id: r.deploymentId, from: .awaitingApproval, to: .rejected, changes: .init(),
                                    event: DeploymentEvent(deploymentId: r.deploymentId, at: instant(2), step: "gate:deploy", actor: "bob", message: "rejected"))
            let events = try upgraded.events(deploymentId: r.deploymentId)
            #expect(events[2].prevHash == "")
            let report = EventChain.verify(events)
            #expect(report.verified)
            #expect(report.note?.contains("events 1-2") == true)
            #expect(report.note?.contains("starts at event 3") == true)
            // Stripping the hash of a chained event to pass it off as old: the next event no longer links.
            try upgraded.appendEvent(DeploymentEvent(deploymentId: r.deploymentId, at: instant(3), step: "note", actor: "x", message: "new"))
            #expect(EventChain.verify(try upgraded.events(deploymentId: r.deploymentId)).verified)
            try raw(upgraded) { c in
                _ = try c.execute("UPDATE ml_deployment_events SET hash = NULL WHERE deployment_id = $1 AND seq = 3", [.text(r.deploymentId)])
            }
            #expect(EventChain.verify(try upgraded.events(deploymentId: r.deploymentId)).brokenAtSeq == 4)
        }
    }
}

@Suite("Event hash chain: SQLite")
struct SQLiteEventChainTests {
    @Test func chainedWritesVerify() throws { try EventChainConformance.chainedWritesVerify(.sqlite) }
    @Test func anEditShowsAtThatEvent() throws { try EventChainConformance.anEditShowsAtThatEvent(.sqlite) }
    @Test func existingLedgersMigrate() throws { try EventChainConformance.existingLedgersMigrate(.sqlite) }
}

@Suite("Event hash chain: Postgres", .serialized, .enabled(if: testPostgresURL != nil, "MODEL_DEPLOYER_TEST_DATABASE_URL is not set"))
struct PostgresEventChainTests {
    @Test func chainedWritesVerify() throws { try EventChainConformance.chainedWritesVerify(.postgres) }
    @Test func anEditShowsAtThatEvent() throws { try EventChainConformance.anEditShowsAtThatEvent(.postgres) }
    @Test func existingLedgersMigrate() throws { try EventChainConformance.existingLedgersMigrate(.postgres) }
}
