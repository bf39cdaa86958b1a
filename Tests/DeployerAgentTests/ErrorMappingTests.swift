import DeployCore
import DeployEngine
@testable import DeployerAgent
import JSON
import JSONRPC
import Testing

/// The engine's refusals meet the contract's error table in one place.
@Suite struct ErrorMappingTests {
    static let table: [JSONValue] = {
        let doc = try! JSONValue.parse(openRPCDocumentText)
        return doc["x-errors"]?.arrayValue ?? []
    }()

    /// The reasons the contract lists under `code`.
    static func reasons(_ code: Int) -> [String] {
        table.first { $0["code"]?.intValue == Int64(code) }?["reasons"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    @Test(arguments: EngineError.Kind.allCases)
    func everyKindHasADocumentedCode(_ kind: EngineError.Kind) {
        let code = ErrorMapping.code(kind)
        #expect(!Self.reasons(code).isEmpty, "\(kind) maps to \(code), which x-errors does not list")
    }

    @Test func kindsAndReasonsAgreeWithTheTable() {
        #expect(Self.reasons(ErrorMapping.code(.approval)).contains("approval_expired"))
        #expect(Self.reasons(ErrorMapping.code(.conflict)).contains("rollout_in_progress"))
        #expect(Self.reasons(ErrorMapping.code(.nothingToRollBack)).contains("rollback_target_unhealthy"))
        #expect(Self.reasons(ErrorMapping.code(.runtimeUnavailable)).contains("switch_unverified"))
        // deploy.stop's refusals.
        #expect(Self.reasons(ErrorMapping.code(EngineError.nothingDeployed("x").kind)).contains("nothing_deployed"))
        #expect(Self.reasons(ErrorMapping.code(EngineError.rolloutInProgress(nil, "x").kind)).contains("rollout_in_progress"))
        // The failure reasons that end a request with a refusal are in the table under their stored code.
        #expect(Self.reasons(ErrorMapping.storedCode(.approval)).contains(FailureReason.approvalExpired.wireName))
        #expect(Self.reasons(ErrorMapping.storedCode(.runtimeUnavailable)).contains(FailureReason.switchUnverified.wireName))
    }

    @Test func storedCodes() {
        #expect(ErrorMapping.storedCode(nil) == -32009)
        #expect(ErrorMapping.storedCode(.approval) == -32004)
        #expect(ErrorMapping.storedCode(.runtimeUnavailable) == -32008)
    }

    @Test func aRefusalBecomesItsRPCError() {
        let e = ErrorMapping.rpc(.rolloutInProgress("d-1", "busy"))
        #expect(e.code == -32002)
        #expect(ErrorMapping.rpc(.cancelled).code == -32800)
    }
}
