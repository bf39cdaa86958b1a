#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
@testable import DeployCore

/// The bake judged on real traffic: the new version after the switch against the old one just before it;
/// the probe baseline only when traffic is thin.
@Suite struct BakeTrafficTests {
    typealias T = MachineTableTests
    let probeOK = Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0, rps: 1)
    let probeBad = Metrics(p50Ms: 1, p95Ms: 900, p99Ms: 900, errorRate: 0.9, rps: 1)

    func traffic(_ candidateP95: Double, requests: Int = 100) -> AnalysisResult {
        Analysis.compare(stable: WindowFigures(requests: 200, errors: 0, p95Ms: 150), candidate: WindowFigures(requests: requests, errors: 0, p95Ms: candidateP95),
                         limits: AnalysisLimits())
    }

    @Test func aLoadedButHealthyVersionIsJudgedAgainstTheLoadedOldOne() {
        // p95 190 ms after the switch against a 25 ms idle probe baseline would be a regression; against
        // the old version's 150 ms on the same traffic it is not.
        var s = T.snapshot(.live)
        s.baseline = Metrics(p50Ms: 10, p95Ms: 25, p99Ms: 30, errorRate: 0, rps: 1)
        let d = Machine.next(s, .bakeWindow(observed: Metrics(p50Ms: 100, p95Ms: 190, p99Ms: 200, errorRate: 0, rps: 1), slotAlive: true, stillLive: true,
                                            traffic: traffic(190)))
        #expect(d.bakeStrikes == 0 && d.actions.last == .measureBake(afterMs: Machine.bakeIntervalMs))
        guard case .noteData(.bakeWindow, let said, let data)? = d.actions.first else { Issue.record("no window event"); return }
        #expect(said.hasPrefix("bake window (real traffic): pass") && data["analysis"]?["verdict"] == "pass")
        // The probe figures are not what decides while traffic is there.
        #expect(Machine.next(s, .bakeWindow(observed: probeBad, slotAlive: true, stillLive: true, traffic: traffic(150))).bakeStrikes == 0)
    }

    @Test func twoSlowTrafficWindowsRollBack() {
        var s = T.snapshot(.live)
        let first = Machine.next(s, .bakeWindow(observed: probeOK, slotAlive: true, stillLive: true, traffic: traffic(400)))
        #expect(first.bakeStrikes == 1)
        s.bakeStrikes = 1
        let second = Machine.next(s, .bakeWindow(observed: probeOK, slotAlive: true, stillLive: true, traffic: traffic(400)))
        #expect(second.actions.last == .route(.previous) && second.rollbackCause?.reason == .latencyRegression)
    }

    @Test func thinTrafficFallsBackToTheProbeBaseline() {
        let s = T.snapshot(.live)
        let d = Machine.next(s, .bakeWindow(observed: probeBad, slotAlive: true, stillLive: true, traffic: traffic(900, requests: 3)))
        #expect(d.bakeStrikes == 1)
        guard case .note(.bakeWindow, let said)? = d.actions.first else { Issue.record("no window note"); return }
        #expect(said.hasPrefix("bake window: error rate"))
    }
}
