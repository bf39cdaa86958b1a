import DeployCore
@testable import DeploymentStore
import Foundation
import JSON
import Synchronization
import Testing

/// The conformance cases every store must pass. Each suite (SQLite, Postgres, in-memory) calls them.
enum Conformance {
    static func withDatabase(_ kind: StoreKind, _ body: (TestDatabase, any DeploymentStore) throws -> Void) throws {
        let db = try TestDatabase(kind)
        defer { db.cleanUp() }
        try body(db, try db.makeStore())
    }

    static func migrations(_ kind: StoreKind) throws {
        try withDatabase(kind) { db, store in
            try store.migrate()
            try store.migrate()
            let other = try db.makeStore()
            try other.migrate()
            switch store {
            case let s as SQLiteStore: #expect(try s.appliedMigrations() == Migration.all.map(\.version))
            case let s as PostgresStore: #expect(try s.appliedMigrations() == Migration.all.map(\.version))
            default: break
            }
            // Both connections work against the migrated schema.
            try store.insert(sampleRecord(), event: planEvent())
            #expect(try other.query(HistoryQuery()).deployments.count == 1)
        }
        // Two connections migrating an empty database at the same moment.
        let db = try TestDatabase(kind)
        defer { db.cleanUp() }
        let stores = [try db.makeStore(), try db.makeStore()]
        let outcomes = concurrently(2) { i -> String in
            do { try stores[i].migrate(); return "ok" } catch { return "\(error)" }
        }
        #expect(outcomes == ["ok", "ok"])
    }

    static func roundTrip(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            let nasty = [
                "it's \"quoted\"", #"back\slash\\ and \n not a newline"#, "Robert'); DROP TABLE ml_deployments;--",
                "50% off_under", "$1 ? :name @p", "ünïcødé ✓ 模型 🚀", "tab\tnew\nline", "",
            ]
            var ids: [String] = []
            for (i, s) in nasty.enumerated() {
                let at = instant(Double(i))
                var r = sampleRecord(model: "m\(i) \(s)", version: s, env: "env \(s)", status: .live, at: at, key: "key \(s)")
                r.bentoTag = s
                r.endpointURL = s
                r.previousVersion = s
                r.slot = s
                r.plan = ["text": .string(s), s: [1, 2.5, .null, true], "nested": ["k": .string(s)]]
                r.planHash = s
                r.healthCheckPassed = i % 2 == 0
                r.metricsBaseline = [s: 0.1, "tiny": 1e-7, "big": 12345.678, "neg": -3]
                r.requestedBy = s
                r.approvedBy = s
                r.approvedAt = instant(Double(i) + 0.000001)
                r.startedAt = instant(Double(i) + 0.5)
                r.finishedAt = instant(Double(i) + 0.999999)
                r.error = ["code": -32001, "reason": "smoke_failed", "message": .string(s)]
                r.rollbackOf = s
                r.owner = s
                r.updatedAt = instant(Double(i) + 0.25)
                let ev = DeploymentEvent(
                    deploymentId: r.deploymentId, at: at, step: s, actor: s, message: s, data: ["s": .string(s), "n": 1])
                let stored = try store.insert(r, event: ev)
                #expect(stored.seq == 1)
                #expect(stored.toStatus == .live)
                #expect(try store.deployment(id: r.deploymentId) == r)
                #expect(try store.deployment(idempotencyKey: "key \(s)") == r)
                let events = try store.events(deploymentId: r.deploymentId)
                #expect(events.count == 1)
                #expect(events.first?.message == s && events.first?.step == s && events.first?.actor == s)
                #expect(events.first?.data == ["s": .string(s), "n": 1])
                // Exact match only: no pattern semantics for % and _, no injection.
                let page = try store.query(HistoryQuery(modelName: "m\(i) \(s)", environment: "env \(s)"))
                #expect(page.deployments.map(\.deploymentId) == [r.deploymentId])
                #expect(try store.query(HistoryQuery(modelVersion: s)).deployments == [r])
                let entry = RegistryEntry(
                    modelName: r.modelName, environment: r.environment, modelVersion: s, deploymentId: r.deploymentId,
                    endpointURL: s, slot: s, bentoTag: s, previousVersion: s, previousDeploymentId: s, previousSlot: s,
                    previousBentoTag: s, updatedAt: at)
                try store.setRegistry(entry)
                #expect(try store.registry(modelName: r.modelName, environment: r.environment) == entry)
                ids.append(r.deploymentId)
            }
            #expect(try store.query(HistoryQuery(modelName: "m0 %")).deployments.isEmpty)
            #expect(try store.query(HistoryQuery(limit: 100)).deployments.map(\.deploymentId) == ids.reversed())
            #expect(try store.allRegistryEntries().count == nasty.count)
            // NUL cannot be stored faithfully by Postgres; every store refuses it the same way.
            var bad = sampleRecord(model: "nul\u{0}model")
            bad.status = .failed
            #expect(throws: StoreError.self) { try store.insert(bad, event: planEvent()) }
        }
    }

    static func oneInFlightPerModel(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            let a = sampleRecord(at: instant(1))
            try store.insert(a, event: planEvent())
            let b = sampleRecord(at: instant(2))
            do {
                try store.insert(b, event: planEvent())
                Issue.record("a second in-flight rollout was accepted")
            } catch let error as StoreError {
                #expect(error.code == .rolloutInProgress)
                #expect(error.deploymentId == a.deploymentId)
            }
            // Another environment, or a finished deployment, is not blocked.
            try store.insert(sampleRecord(env: "staging", at: instant(3)), event: planEvent())
            try store.insert(sampleRecord(status: .failed, at: instant(4)), event: planEvent())
            #expect(try store.inFlight(modelName: "iris", environment: "production")?.deploymentId == a.deploymentId)
            // A transition that would put a second one in flight is refused too.
            let done = sampleRecord(status: .failed, at: instant(5))
            try store.insert(done, event: planEvent())
            do {
                try store.transition(id: done.deploymentId, from: .failed, to: .deploying, changes: .init(), event: planEvent(at: instant(6)))
                Issue.record("a transition into a second in-flight rollout was accepted")
            } catch let error as StoreError {
                #expect(error.code == .rolloutInProgress)
                #expect(error.deploymentId == a.deploymentId)
            }
            #expect(try store.deployment(id: done.deploymentId)?.status == .failed)
            // Once the first is terminal, the next one may start.
            try store.transition(id: a.deploymentId, from: .planned, to: .rejected, changes: .init(), event: planEvent(at: instant(7)))
            try store.insert(b, event: planEvent())
            #expect(try store.inFlight(modelName: "iris", environment: "production")?.deploymentId == b.deploymentId)
            let statuses = try store.deployments(withStatuses: [.planned, .failed]).map(\.status)
            #expect(statuses == [.planned, .planned, .failed, .failed])
        }
    }

    /// Two threads, each with its own connection, race to create rollouts for the same models.
    static func raceThreads(_ kind: StoreKind) throws {
        try withDatabase(kind) { db, store in
            try store.migrate()
            let stores = [try db.makeStore(), try db.makeStore()]
            let models = 15
            let results = concurrently(2) { t -> [String] in
                (0..<models).map { m in
                    let r = sampleRecord(model: "race-\(m)", at: Date())
                    do {
                        try stores[t].insert(r, event: planEvent())
                        return "won \(r.deploymentId)"
                    } catch let error as StoreError {
                        return error.code == .rolloutInProgress ? "lost \(error.deploymentId ?? "?")" : "error \(error)"
                    } catch {
                        return "error \(error)"
                    }
                }
            }
            for m in 0..<models {
                let pair = [results[0][m], results[1][m]]
                #expect(pair.filter { $0.hasPrefix("won ") }.count == 1, "model \(m): \(pair)")
                let winner = try store.inFlight(modelName: "race-\(m)", environment: "production")?.deploymentId
                #expect(pair.contains("won \(winner ?? "-")"))
                #expect(pair.contains("lost \(winner ?? "-")"))
            }
        }
    }

    /// Two PROCESSES (ledger-bench race), both migrating the empty database and then racing for the same models.
    static func raceProcesses(_ kind: StoreKind) throws {
        let db = try TestDatabase(kind)
        defer { db.cleanUp() }
        let bench = try ledgerBenchPath()
        let go = db.dir + "-go"
        defer { try? FileManager.default.removeItem(atPath: go) }
        let models = 25
        var procs: [(Process, Pipe)] = []
        for _ in 0..<2 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: bench)
            p.arguments = ["race"] + db.raceArguments + ["--go", go, "--models", String(models), "--prefix", "model"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            procs.append((p, out))
        }
        var outputs = ["", ""]
        for (i, (_, out)) in procs.enumerated() {
            while !outputs[i].contains("ready\n") {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                outputs[i] += String(decoding: chunk, as: UTF8.self)
            }
            #expect(outputs[i].contains("ready"), "child \(i) did not get ready: \(outputs[i])")
        }
        FileManager.default.createFile(atPath: go, contents: Data())
        for (i, (p, out)) in procs.enumerated() {
            outputs[i] += String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
        }
        let lines = outputs.map { $0.split(separator: "\n").filter { $0 != "ready" }.map(String.init) }
        #expect(lines[0].count == models && lines[1].count == models, "\(outputs)")
        let store = try db.makeStore()
        for m in 0..<min(models, lines[0].count, lines[1].count) {
            let pair = [lines[0][m], lines[1][m]]
            #expect(pair.filter { $0.hasPrefix("won \(m) ") }.count == 1, "model \(m): \(pair)")
            let winner = try store.inFlight(modelName: "model-\(m)", environment: "production")?.deploymentId ?? "-"
            #expect(Set(pair) == ["won \(m) \(winner)", "lost \(m) \(winner)"], "model \(m): \(pair)")
        }
        #expect(try store.query(HistoryQuery(limit: 1000)).deployments.count == models)
    }

    static func compareAndSet(_ kind: StoreKind) throws {
        try withDatabase(kind) { db, store in
            let r = sampleRecord(at: instant(0))
            try store.insert(r, event: planEvent())
            let approved = try store.transition(
                id: r.deploymentId, from: .planned, to: .approved,
                changes: .init(approvedBy: "bob", approvedAt: instant(1), owner: .some("host:1:2")),
                event: DeploymentEvent(deploymentId: r.deploymentId, at: instant(1), step: "approve", actor: "bob", message: "ok"))
            #expect(approved.status == .approved && approved.approvedBy == "bob" && approved.approvedAt == instant(1))
            #expect(approved.owner == "host:1:2" && approved.updatedAt == instant(1))
            #expect(approved.slot == r.slot && approved.plan == r.plan)
            // A stale writer that still believes the deployment is planned loses.
            do {
                try store.transition(id: r.deploymentId, from: .planned, to: .rejected, changes: .init(), event: planEvent(at: instant(2)))
                Issue.record("stale compare-and-set succeeded")
            } catch let error as StoreError {
                #expect(error.code == .statusConflict)
                #expect(error.actualStatus == .approved)
            }
            do {
                try store.transition(id: "no-such-id", from: .planned, to: .approved, changes: .init(), event: planEvent())
                Issue.record("transition of a missing deployment succeeded")
            } catch let error as StoreError {
                #expect(error.code == .notFound)
            }
            // Two connections race the same move: exactly one wins.
            let stores = [try db.makeStore(), try db.makeStore()]
            let outcomes = concurrently(2) { i -> String in
                do {
                    try stores[i].transition(
                        id: r.deploymentId, from: .approved, to: .deploying, changes: .init(slot: "blue-\(i)"),
                        event: DeploymentEvent(deploymentId: r.deploymentId, at: instant(3), step: "start_slot", actor: "t\(i)", message: ""))
                    return "ok"
                } catch let error as StoreError { return error.code.rawValue } catch { return "\(error)" }
            }
            #expect(outcomes.sorted() == ["ok", "status_conflict"])
            let now = try #require(try store.deployment(id: r.deploymentId))
            #expect(now.status == .deploying)
            let failed = try store.transition(
                id: r.deploymentId, from: .deploying, to: .failed,
                changes: .init(healthCheckPassed: false, metricsBaseline: ["p50": 3], finishedAt: instant(4),
                    error: ["code": 1, "reason": "readiness_timeout"], owner: .some(nil)),
                event: planEvent(at: instant(4)))
            #expect(failed.owner == nil && failed.healthCheckPassed == false && failed.metricsBaseline == ["p50": 3])
            #expect(failed.error == ["code": 1, "reason": "readiness_timeout"] && failed.finishedAt == instant(4))
            let events = try store.events(deploymentId: r.deploymentId)
            #expect(events.map(\.seq) == [1, 2, 3, 4])
            #expect(events.map(\.toStatus) == [.planned, .approved, .deploying, .failed])
            #expect(events.map(\.fromStatus) == [nil, .planned, .approved, .deploying])
        }
    }

    static func eventsInOrder(_ kind: StoreKind) throws {
        try withDatabase(kind) { db, store in
            let r = sampleRecord()
            try store.insert(r, event: planEvent())
            for i in 0..<5 {
                let e = try store.appendEvent(
                    DeploymentEvent(deploymentId: r.deploymentId, at: instant(Double(i)), step: "step\(i)", actor: "a", message: "m\(i)"))
                #expect(e.seq == i + 2)
            }
            let stores = [try db.makeStore(), try db.makeStore()]
            let appended = concurrently(2) { t -> [Int] in
                (0..<10).compactMap { i in
                    try? stores[t].appendEvent(
                        DeploymentEvent(deploymentId: r.deploymentId, at: instant(10), step: "c", actor: "t\(t)", message: "\(i)")).seq
                }
            }
            #expect(appended[0].count == 10 && appended[1].count == 10)
            let events = try store.events(deploymentId: r.deploymentId)
            #expect(events.map(\.seq) == Array(1...26))
            #expect(events[1...5].map(\.step) == ["step0", "step1", "step2", "step3", "step4"])
            #expect(Set(appended[0] + appended[1]) == Set(7...26))
            do {
                try store.appendEvent(DeploymentEvent(deploymentId: "missing", at: instant(0), step: "x", actor: "a", message: ""))
                Issue.record("event for a missing deployment was accepted")
            } catch let error as StoreError {
                #expect(error.code == .notFound)
            }
            let page = try store.query(HistoryQuery(deploymentId: r.deploymentId, includeEvents: true))
            #expect(page.events[r.deploymentId]?.map(\.seq) == Array(1...26))
        }
    }

    static func idempotencyKey(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            let r = sampleRecord(status: .failed, key: "req-42")
            try store.insert(r, event: planEvent())
            #expect(try store.deployment(idempotencyKey: "req-42")?.deploymentId == r.deploymentId)
            #expect(try store.deployment(idempotencyKey: "req-43") == nil)
            do {
                try store.insert(sampleRecord(status: .failed, key: "req-42"), event: planEvent())
                Issue.record("duplicate idempotency key accepted")
            } catch let error as StoreError {
                #expect(error.code == .duplicateIdempotencyKey)
                #expect(error.deploymentId == r.deploymentId)
            }
            // Keys are optional: many deployments without one.
            try store.insert(sampleRecord(status: .failed), event: planEvent())
            try store.insert(sampleRecord(status: .failed), event: planEvent())
        }
    }

    /// A row this agent cannot decode (a status from a newer agent sharing the ledger, damaged JSON) is
    /// reported beside the others; the page, its cursor and the events of the readable rows stay whole.
    static func unreadableRows(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            var ids: [String] = []
            for i in 0..<5 {
                let r = sampleRecord(status: .failed, at: instant(Double(i)))
                try store.insert(r, event: planEvent())
                ids.append(r.deploymentId)
            }
            // Postgres stores JSON as jsonb, so only SQLite can hold damaged JSON; both can hold a value a
            // newer agent wrote (a status or strategy this one does not know).
            let damagedEvents = kind == .sqlite
            let damage: (any SQLConnection) throws -> Void = { c in
                _ = try c.execute("UPDATE ml_deployments SET status = 'from_a_newer_agent' WHERE deployment_id = $1", [.text(ids[3])])
                if damagedEvents {
                    _ = try c.execute("UPDATE ml_deployments SET plan = '{not json' WHERE deployment_id = $1", [.text(ids[1])])
                    _ = try c.execute("UPDATE ml_deployment_events SET data = '[broken' WHERE deployment_id = $1", [.text(ids[2])])
                } else {
                    _ = try c.execute("UPDATE ml_deployments SET deployment_strategy = 'from_a_newer_agent' WHERE deployment_id = $1", [.text(ids[1])])
                }
            }
            switch store {
            case let s as SQLiteStore: try s.withWriteTransaction(damage)
            case let s as PostgresStore: try s.withWriteTransaction(damage)
            default: Issue.record("no raw access to \(kind)"); return
            }
            let all = try store.query(HistoryQuery(includeEvents: true))
            #expect(all.deployments.map(\.deploymentId) == [ids[4], ids[2], ids[0]])
            if damagedEvents {
                #expect(Set(all.unreadable.map(\.deploymentId)) == [ids[3], ids[1], ids[2]])
                #expect(all.unreadable.first { $0.deploymentId == ids[2] }?.eventSeq == 1)
            } else {
                #expect(Set(all.unreadable.map(\.deploymentId)) == [ids[3], ids[1]])
            }
            #expect(all.unreadable.first { $0.deploymentId == ids[3] }?.problem.contains("status") == true)
            #expect(all.events[ids[4]]?.count == 1)
            // Paging past an unreadable last row: the cursor comes from the raw row.
            let first = try store.query(HistoryQuery(limit: 2))
            #expect(first.deployments.map(\.deploymentId) == [ids[4]])
            #expect(first.unreadable.map(\.deploymentId) == [ids[3]])
            let second = try store.query(HistoryQuery(limit: 2, cursor: first.nextCursor))
            #expect(second.deployments.map(\.deploymentId) == [ids[2]])
            #expect(second.unreadable.map(\.deploymentId) == [ids[1]])
        }
    }

    static func paginationUnderInserts(_ kind: StoreKind) throws {
        try withDatabase(kind) { db, store in
            var expected: [String] = []
            for i in 0..<90 {
                // Every third pair shares created_at: the id breaks the tie.
                let r = sampleRecord(model: "m\(i % 4)", status: .failed, at: instant(Double(i / 3 * 3)))
                try store.insert(r, event: planEvent())
                expected.append(r.deploymentId)
            }
            let writer = try db.makeStore()
            let stop = Atomic<Bool>(false)
            let inserted = Atomic<Int>(0)
            let thread = Thread {
                var i = 0
                while !stop.load(ordering: .relaxed) {
                    // Newer rows keep arriving while the reader pages.
                    let r = sampleRecord(model: "m\(i % 4)", status: .failed, at: instant(1000 + Double(i)))
                    if (try? writer.insert(r, event: planEvent())) != nil { inserted.add(1, ordering: .relaxed) }
                    i += 1
                }
            }
            thread.start()
            defer { stop.store(true, ordering: .relaxed) }
            for filter in [HistoryQuery(limit: 7), HistoryQuery(modelName: "m1", statuses: [.failed, .rolledBack], limit: 4)] {
                var seen: [DeploymentRecord] = []
                var cursor: String?
                var pages = 0
                repeat {
                    var q = filter
                    q.cursor = cursor
                    let page = try store.query(q)
                    seen += page.deployments
                    cursor = page.nextCursor
                    pages += 1
                    Thread.sleep(forTimeInterval: 0.002)
                } while cursor != nil && pages < 1000
                let ids = seen.map(\.deploymentId)
                #expect(Set(ids).count == ids.count, "duplicates across pages")
                let want = filter.modelName == nil ? expected : expected.enumerated().filter { $0.offset % 4 == 1 }.map(\.element)
                #expect(Set(want).isSubset(of: Set(ids)), "gaps: \(Set(want).subtracting(ids).count) missing")
                for (a, b) in zip(seen, seen.dropFirst()) {
                    #expect(a.createdAt > b.createdAt || (a.createdAt == b.createdAt && a.deploymentId > b.deploymentId))
                }
                // Everything after the first page is from the original set (newer rows land before page 1).
                #expect(Array(ids.suffix(want.count)) == want.reversed())
            }
            stop.store(true, ordering: .relaxed)
            while !thread.isFinished { Thread.sleep(forTimeInterval: 0.005) }
            #expect(inserted.load(ordering: .relaxed) > 0)
            do {
                _ = try store.query(HistoryQuery(cursor: "not-a-cursor"))
                Issue.record("bad cursor accepted")
            } catch let error as StoreError {
                #expect(error.code == .invalidCursor)
            }
        }
    }

    static func filters(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            let a = sampleRecord(model: "a", version: "1", status: .failed, at: instant(10), strategy: .direct)
            let b = sampleRecord(model: "a", version: "2", status: .live, at: instant(20))
            let c = sampleRecord(model: "b", version: "1", env: "staging", status: .rolledBack, at: instant(30), strategy: .rollback)
            for r in [a, b, c] { try store.insert(r, event: planEvent()) }
            func ids(_ q: HistoryQuery) throws -> [String] { try store.query(q).deployments.map(\.deploymentId) }
            #expect(try ids(HistoryQuery()) == [c, b, a].map(\.deploymentId))
            #expect(try ids(HistoryQuery(modelName: "a")) == [b, a].map(\.deploymentId))
            #expect(try ids(HistoryQuery(modelVersion: "1")) == [c, a].map(\.deploymentId))
            #expect(try ids(HistoryQuery(environment: "staging")) == [c.deploymentId])
            #expect(try ids(HistoryQuery(statuses: [.live])) == [b.deploymentId])
            #expect(try ids(HistoryQuery(statuses: [.live, .failed])) == [b, a].map(\.deploymentId))
            #expect(try ids(HistoryQuery(strategy: .rollback)) == [c.deploymentId])
            #expect(try ids(HistoryQuery(deploymentId: a.deploymentId)) == [a.deploymentId])
            #expect(try ids(HistoryQuery(since: instant(20))) == [c, b].map(\.deploymentId))
            #expect(try ids(HistoryQuery(until: instant(20))) == [a.deploymentId])
            #expect(try ids(HistoryQuery(since: instant(11), until: instant(30))) == [b.deploymentId])
            let p1 = try store.query(HistoryQuery(limit: 2))
            #expect(p1.deployments.count == 2 && p1.nextCursor != nil && p1.events.isEmpty)
            let p2 = try store.query(HistoryQuery(limit: 2, cursor: p1.nextCursor))
            #expect(p2.deployments.map(\.deploymentId) == [a.deploymentId] && p2.nextCursor == nil)
            #expect(try store.query(HistoryQuery(limit: 3)).nextCursor == nil)
        }
    }

    static func liveAt(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            let v1 = sampleRecord(version: "v1", status: .live, at: instant(0))
            let v2 = sampleRecord(version: "v2", status: .live, at: instant(100))
            let other = sampleRecord(model: "other", version: "x", status: .live, at: instant(50))
            for r in [v1, v2, other] { try store.insert(r, event: planEvent()) }
            func entry(_ r: DeploymentRecord, at: Double) -> RegistryEntry {
                RegistryEntry(
                    modelName: r.modelName, environment: r.environment, modelVersion: r.modelVersion, deploymentId: r.deploymentId,
                    endpointURL: "http://127.0.0.1:8080", slot: r.slot ?? "blue", updatedAt: instant(at))
            }
            try store.setRegistry(entry(v1, at: 10))
            try store.setRegistry(entry(other, at: 60))
            try store.setRegistry(entry(v2, at: 110))
            try store.setRegistry(entry(v2, at: 150))  // same deployment again: no new interval
            try store.setRegistry(entry(v1, at: 200))  // rollback to v1
            func liveAt(_ t: Double, model: String = "iris") throws -> [String] {
                try store.query(HistoryQuery(modelName: model, environment: "production", liveAt: instant(t))).deployments.map(\.deploymentId)
            }
            #expect(try liveAt(5) == [])
            #expect(try liveAt(10) == [v1.deploymentId])
            #expect(try liveAt(109.999999) == [v1.deploymentId])
            #expect(try liveAt(110) == [v2.deploymentId])
            #expect(try liveAt(160) == [v2.deploymentId])
            #expect(try liveAt(200) == [v1.deploymentId])
            #expect(try liveAt(1_000_000) == [v1.deploymentId])
            #expect(try liveAt(70, model: "other") == [other.deploymentId])
            #expect(try liveAt(55, model: "other") == [])
            // Without model and environment: every deployment live at that instant.
            let all = try store.query(HistoryQuery(liveAt: instant(120))).deployments.map(\.deploymentId)
            #expect(Set(all) == [v2.deploymentId, other.deploymentId])
            let reg = try store.registry(modelName: "iris", environment: "production")
            #expect(reg?.deploymentId == v1.deploymentId && reg?.updatedAt == instant(200))
            #expect(try store.registry(modelName: "iris", environment: "staging") == nil)
            #expect(try store.allRegistryEntries().map(\.modelName) == ["iris", "other"])
        }
    }

    /// `deploy.stop`'s write: live -> stopped clears the registry row naming the deployment and closes its live
    /// interval in the same transaction; a row naming another deployment is left alone.
    static func stopClearsRegistry(_ kind: StoreKind) throws {
        try withDatabase(kind) { _, store in
            let v1 = sampleRecord(version: "v1", status: .live, at: instant(0))
            let other = sampleRecord(model: "other", version: "x", status: .live, at: instant(5))
            for r in [v1, other] { try store.insert(r, event: planEvent()) }
            for (r, at) in [(v1, 10.0), (other, 12.0)] {
                try store.setRegistry(RegistryEntry(
                    modelName: r.modelName, environment: r.environment, modelVersion: r.modelVersion, deploymentId: r.deploymentId,
                    endpointURL: "http://127.0.0.1:8080", slot: r.slot ?? "blue", updatedAt: instant(at)))
            }
            // A row naming another deployment is not cleared.
            #expect(try store.clearRegistry(modelName: "iris", environment: "production", deploymentId: other.deploymentId, at: instant(15)) == false)
            #expect(try store.registry(modelName: "iris", environment: "production")?.deploymentId == v1.deploymentId)
            let stopped = try store.transition(
                id: v1.deploymentId, from: .live, to: .stopped, changes: DeploymentChanges(clearsRegistry: true),
                event: DeploymentEvent(deploymentId: v1.deploymentId, at: instant(20), step: "stop", actor: "carol", message: "stopped"))
            #expect(stopped.status == .stopped)
            #expect(try store.registry(modelName: "iris", environment: "production") == nil)
            #expect(try store.allRegistryEntries().map(\.modelName) == ["other"])
            #expect(try store.events(deploymentId: v1.deploymentId).last?.toStatus == .stopped)
            func liveAt(_ t: Double) throws -> [String] {
                try store.query(HistoryQuery(modelName: "iris", environment: "production", liveAt: instant(t))).deployments.map(\.deploymentId)
            }
            #expect(try liveAt(19) == [v1.deploymentId])
            #expect(try liveAt(20) == [])
            // Standalone (a registry row left behind): cleared once, then there is nothing to clear.
            #expect(try store.clearRegistry(modelName: "other", environment: "production", deploymentId: other.deploymentId, at: instant(30)))
            #expect(try store.clearRegistry(modelName: "other", environment: "production", deploymentId: other.deploymentId, at: instant(31)) == false)
            #expect(try store.allRegistryEntries().isEmpty)
        }
    }
}
