import DeployCore
@testable import DeploymentStore
import Foundation
import Testing

struct DeploymentIDTests {
    @Test func isLowercaseUUIDv7() {
        let id = makeDeploymentID(now: Date())
        #expect(id.count == 36)
        #expect(id == id.lowercased())
        let chars = Array(id)
        #expect(chars[8] == "-" && chars[13] == "-" && chars[18] == "-" && chars[23] == "-")
        #expect(chars[14] == "7")
        #expect("89ab".contains(chars[19]))
    }

    @Test func sortsByTimeAndIsStrictlyIncreasingInProcess() {
        let t = Date()
        var ids = (0..<5000).map { _ in makeDeploymentID(now: t) }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
        ids = [makeDeploymentID(now: t.addingTimeInterval(10)), makeDeploymentID(now: t.addingTimeInterval(20))]
        #expect(ids[0] < ids[1])
        let a = makeDeploymentID(unixMicros: 1_000_000, random: 99)
        let b = makeDeploymentID(unixMicros: 1_000_001_000, random: 1)
        #expect(a < b)
    }
}

struct LedgerSQLTests {
    @Test func inFlightIndexMatchesTheStatusModel() {
        let listed = Set(Ledger.inFlightSQLList.split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        })
        #expect(listed == Set(DeploymentStatus.inFlight.map(\.rawValue)))
    }

    @Test func placeholdersAreRewrittenForSQLite() {
        #expect(sqlitePlaceholders("a = $1 AND b < $12::timestamptz AND c = $3::text[]") == "a = ?1 AND b < ?12 AND c = ?3")
        #expect(sqlitePlaceholders("x = '$'") == "x = '$'")
    }

    @Test func cursorRoundTripsAndRejectsForgeries() {
        let c = Ledger.encodeCursor(1_700_000_000_123_456, "018f-id")
        #expect(Ledger.decodeCursor(c)! == (1_700_000_000_123_456, "018f-id"))
        #expect(Ledger.decodeCursor("garbage") == nil)
        #expect(Ledger.decodeCursor("") == nil)
    }

    @Test func rfc3339() {
        #expect(Micros.rfc3339(0) == "1970-01-01T00:00:00.000000Z")
        #expect(Micros.rfc3339(1_735_689_600_000_001) == "2025-01-01T00:00:00.000001Z")
        #expect(Micros.rfc3339(951_782_400_500_000) == "2000-02-29T00:00:00.500000Z")
        #expect(Micros.rfc3339(-1) == "1969-12-31T23:59:59.999999Z")
        let m: Int64 = 1_735_689_600_123_456
        #expect(Micros.from(Micros.date(m)) == m)
    }

    @Test func arrayLiteralsEscapeQuotesAndBackslashes() {
        #expect(PostgresStore.arrayLiteral([.text("a\"b\\c"), .null, .int(3), .bool(true)]) == #"{"a\"b\\c",NULL,"3","t"}"#)
    }
}

struct OpenStoreTests {
    @Test func defaultsToSQLiteInAPrivateHome() throws {
        let home = NSTemporaryDirectory() + "ledger-home-\(UUID().uuidString)/nested"
        defer { try? FileManager.default.removeItem(atPath: (home as NSString).deletingLastPathComponent) }
        let store = try openStore(databaseURL: nil, home: home)
        let sqlite = try #require(store as? SQLiteStore)
        #expect(sqlite.path == home + "/deployer.db")
        let attrs = try FileManager.default.attributesOfItem(atPath: home)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        try store.insert(sampleRecord(), event: planEvent())
        #expect(FileManager.default.fileExists(atPath: home + "/deployer.db"))
        #expect(try openStore(databaseURL: "  ", home: home) is SQLiteStore)
    }

    @Test func postgresURLsSelectPostgresWithoutConnecting() throws {
        #expect(try openStore(databaseURL: "postgres://u@127.0.0.1:1/db", home: "/nonexistent") is PostgresStore)
        #expect(try openStore(databaseURL: "postgresql://u@127.0.0.1:1/db", home: "/nonexistent") is PostgresStore)
        #expect(try openStore(databaseURL: "host=127.0.0.1 port=1 dbname=x", home: "/nonexistent") is PostgresStore)
        #expect(throws: StoreError.self) { try openStore(databaseURL: "mysql://x", home: "/tmp") }
    }

    @Test func unreachablePostgresIsADatabaseError() throws {
        let store = try PostgresStore(connectionString: "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=1")
        do {
            _ = try store.deployment(id: "x")
            Issue.record("expected a connection error")
        } catch let error as StoreError {
            #expect(error.code == .database)
        }
    }

    @Test func schemaNamesAreValidated() {
        #expect(throws: StoreError.self) { try PostgresStore(connectionString: "postgres://x", schema: "bad\"name") }
        #expect(throws: StoreError.self) { try PostgresStore(connectionString: "postgres://x", schema: "1abc") }
    }
}
