import DeployCore
import Testing

/// The allowed transitions, written out independently of the implementation.
private let allowed: [DeploymentStatus: [LifecycleEvent: DeploymentStatus]] = [
    .planned: [.execute: .deploying, .interrupt: .interrupted, .expire: .expired],
    .awaitingApproval: [
        .approve(gate: .deploy): .approved, .reject(gate: .deploy): .rejected, .interrupt: .interrupted, .expire: .expired,
    ],
    .approved: [.execute: .deploying, .interrupt: .interrupted],
    .deploying: [.slotReady: .validating, .fail: .failed, .interrupt: .interrupted],
    .validating: [
        .validated(promotionGate: true): .awaitingPromotion, .validated(promotionGate: false): .switching, .fail: .failed,
        .interrupt: .interrupted, .startCanary: .canary,
    ],
    .awaitingPromotion: [
        .approve(gate: .promote): .switching, .reject(gate: .promote): .rejected, .interrupt: .interrupted, .expire: .expired,
        .startCanary: .canary,
    ],
    .switching: [.switched: .live, .fail: .failed, .interrupt: .interrupted],
    .canary: [.awaitStep: .awaitingStep, .switched: .live, .fail: .failed, .abort: .aborted, .interrupt: .interrupted],
    .awaitingStep: [
        .approve(gate: .step): .canary, .reject(gate: .step): .aborted, .abort: .aborted, .interrupt: .interrupted, .expire: .expired,
    ],
    .live: [.rollBack: .rolledBack, .supersede: .superseded, .stop: .stopped],
]

@Suite struct LifecycleTests {
    @Test func everyStatusEventPair() {
        var checked = 0
        for status in DeploymentStatus.allCases {
            for event in LifecycleEvent.all {
                let result = Lifecycle.next(status, on: event)
                if let expected = allowed[status]?[event] {
                    #expect(result == .success(expected), "\(status) --\(event.name)-->")
                } else {
                    guard case .failure(let error) = result else {
                        Issue.record("\(status) --\(event.name)--> should be refused, got \(result)")
                        continue
                    }
                    #expect(error.from == status)
                    #expect(error.event == event)
                    #expect(!error.message.isEmpty)
                    switch event {
                    case .approve, .reject: #expect(error.reason == "not_awaiting_approval", "\(status) \(event.name)")
                    default: #expect(error.reason == "invalid_transition", "\(status) \(event.name)")
                    }
                }
                checked += 1
            }
        }
        #expect(checked == DeploymentStatus.allCases.count * LifecycleEvent.all.count)
    }

    @Test func terminalStatusesHaveNoWayOut() {
        for status in DeploymentStatus.allCases where status.isTerminal {
            #expect(LifecycleEvent.all.allSatisfy { !Lifecycle.allows(status, $0) }, "\(status)")
        }
    }

    @Test func interruptExactlyFromInFlight() {
        for status in DeploymentStatus.allCases {
            #expect(Lifecycle.allows(status, .interrupt) == status.isInFlight, "\(status)")
        }
    }

    @Test func approvingTheWrongGateNamesThePendingOne() throws {
        guard case .failure(let e) = Lifecycle.next(.awaitingApproval, on: .approve(gate: .promote)) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(e.reason == "not_awaiting_approval")
        #expect(e.message.contains("waiting at the deploy gate"))
        guard case .failure(let e2) = Lifecycle.next(.rejected, on: .approve(gate: .deploy)) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(e2.message.contains("rejected"))
    }

    @Test func happyPathsWalkThrough() {
        func walk(_ start: DeploymentStatus, _ events: [LifecycleEvent]) -> DeploymentStatus? {
            var s = start
            for e in events {
                guard case .success(let n) = Lifecycle.next(s, on: e) else { return nil }
                s = n
            }
            return s
        }
        #expect(walk(.awaitingApproval, [.approve(gate: .deploy), .execute, .slotReady, .validated(promotionGate: true),
            .approve(gate: .promote), .switched, .rollBack]) == .rolledBack)
        #expect(walk(.planned, [.execute, .slotReady, .validated(promotionGate: false), .switched, .supersede]) == .superseded)
        #expect(walk(.planned, [.execute, .fail]) == .failed)
    }

    @Test func initialStatusFollowsTheDeployGate() {
        #expect(Lifecycle.initialStatus(gates: []) == .planned)
        #expect(Lifecycle.initialStatus(gates: [Gate(kind: .promote)]) == .planned)
        #expect(Lifecycle.initialStatus(gates: [Gate(kind: .deploy), Gate(kind: .promote)]) == .awaitingApproval)
        #expect(Lifecycle.pendingGate(.awaitingApproval) == .deploy)
        #expect(Lifecycle.pendingGate(.awaitingPromotion) == .promote)
        #expect(Lifecycle.pendingGate(.live) == nil)
    }

    @Test func eventNamesAreDistinct() {
        #expect(Set(LifecycleEvent.all.map(\.name)).count == LifecycleEvent.all.count)
        #expect(DeploymentStatus.allCases.allSatisfy { !$0.summary.isEmpty })
    }
}
