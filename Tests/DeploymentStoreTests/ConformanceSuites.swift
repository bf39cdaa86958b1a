import DeployCore
@testable import DeploymentStore
import Foundation
import Testing

@Suite("Ledger conformance: SQLite")
struct SQLiteConformanceTests {
    @Test func migrationsFromEmptyAndRerun() throws { try Conformance.migrations(.sqlite) }
    @Test func valuesRoundTripExactly() throws { try Conformance.roundTrip(.sqlite) }
    @Test func oneInFlightRolloutPerModelAndEnvironment() throws { try Conformance.oneInFlightPerModel(.sqlite) }
    @Test func twoConnectionsRaceForOneRollout() throws { try Conformance.raceThreads(.sqlite) }
    @Test func twoProcessesRaceForOneRollout() throws { try Conformance.raceProcesses(.sqlite) }
    @Test func compareAndSetTransitions() throws { try Conformance.compareAndSet(.sqlite) }
    @Test func eventsAreNumberedInOrder() throws { try Conformance.eventsInOrder(.sqlite) }
    @Test func idempotencyKeyLookup() throws { try Conformance.idempotencyKey(.sqlite) }
    @Test func paginationHasNoGapsOrDuplicatesUnderInserts() throws { try Conformance.paginationUnderInserts(.sqlite) }
    @Test func queryFilters() throws { try Conformance.filters(.sqlite) }
    @Test func unreadableRowsAreReportedNotFatal() throws { try Conformance.unreadableRows(.sqlite) }
    @Test func liveAtAnswersWhichDeploymentWasLive() throws { try Conformance.liveAt(.sqlite) }
    @Test func stopClearsTheRegistry() throws { try Conformance.stopClearsRegistry(.sqlite) }
}

/// Runs when `MODEL_DEPLOYER_TEST_DATABASE_URL` names a Postgres server (see README: `scripts/pg-cluster.sh`).
/// Serialized because one case restarts the server.
@Suite("Ledger conformance: Postgres", .serialized, .enabled(if: testPostgresURL != nil, "MODEL_DEPLOYER_TEST_DATABASE_URL is not set"))
struct PostgresConformanceTests {
    @Test func migrationsFromEmptyAndRerun() throws { try Conformance.migrations(.postgres) }
    @Test func valuesRoundTripExactly() throws { try Conformance.roundTrip(.postgres) }
    @Test func oneInFlightRolloutPerModelAndEnvironment() throws { try Conformance.oneInFlightPerModel(.postgres) }
    @Test func twoConnectionsRaceForOneRollout() throws { try Conformance.raceThreads(.postgres) }
    @Test func twoProcessesRaceForOneRollout() throws { try Conformance.raceProcesses(.postgres) }
    @Test func compareAndSetTransitions() throws { try Conformance.compareAndSet(.postgres) }
    @Test func eventsAreNumberedInOrder() throws { try Conformance.eventsInOrder(.postgres) }
    @Test func idempotencyKeyLookup() throws { try Conformance.idempotencyKey(.postgres) }
    @Test func paginationHasNoGapsOrDuplicatesUnderInserts() throws { try Conformance.paginationUnderInserts(.postgres) }
    @Test func queryFilters() throws { try Conformance.filters(.postgres) }
    @Test func unreadableRowsAreReportedNotFatal() throws { try Conformance.unreadableRows(.postgres) }
    @Test func liveAtAnswersWhichDeploymentWasLive() throws { try Conformance.liveAt(.postgres) }
    @Test func stopClearsTheRegistry() throws { try Conformance.stopClearsRegistry(.postgres) }
    @Test func survivesAServerRestartMidSession() throws { try PostgresRestart.restartMidSession() }
    @Test func survivesAKilledConnection() throws { try PostgresRestart.killedConnection() }
}

/// The test double follows the same rules (process and restart cases do not apply).
@Suite("Ledger conformance: InMemoryStore")
struct InMemoryConformanceTests {
    @Test func valuesRoundTripExactly() throws { try Conformance.roundTrip(.memory) }
    @Test func oneInFlightRolloutPerModelAndEnvironment() throws { try Conformance.oneInFlightPerModel(.memory) }
    @Test func twoConnectionsRaceForOneRollout() throws { try Conformance.raceThreads(.memory) }
    @Test func compareAndSetTransitions() throws { try Conformance.compareAndSet(.memory) }
    @Test func eventsAreNumberedInOrder() throws { try Conformance.eventsInOrder(.memory) }
    @Test func idempotencyKeyLookup() throws { try Conformance.idempotencyKey(.memory) }
    @Test func paginationHasNoGapsOrDuplicatesUnderInserts() throws { try Conformance.paginationUnderInserts(.memory) }
    @Test func queryFilters() throws { try Conformance.filters(.memory) }
    @Test func liveAtAnswersWhichDeploymentWasLive() throws { try Conformance.liveAt(.memory) }
    @Test func stopClearsTheRegistry() throws { try Conformance.stopClearsRegistry(.memory) }
}
