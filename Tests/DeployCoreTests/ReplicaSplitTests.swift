import DeployCore
import Testing

/// A canary's weight as replica counts on Kubernetes (a Service spreads over ready Pods).
@Suite struct ReplicaSplitTests {
    @Test(arguments: [
        // (weight, replicas) -> (candidate, stable, candidate's share of the Pods)
        (25, 3, 1, 3, 25), (50, 3, 3, 3, 50), (75, 3, 3, 1, 75), (100, 3, 3, 0, 100), (0, 3, 0, 3, 0),
        // One Pod per version: every step below 100 is one each.
        (5, 1, 1, 1, 50), (90, 1, 1, 1, 50),
        // Never fewer than one Pod of either side below 100, never more than the environment's replicas.
        (1, 4, 1, 4, 20), (99, 4, 4, 1, 80), (10, 10, 1, 10, 9), (20, 4, 1, 4, 20), (40, 6, 4, 6, 40),
        (1, 1000, 10, 1000, 1),
    ])
    func weightsBecomeReplicaCounts(w: Int, n: Int, candidate: Int, stable: Int, share: Int) {
        let s = ReplicaSplit(weight: w, replicas: n)
        #expect(s.candidate == candidate && s.stable == stable, "\(w)% of \(n): \(s)")
        #expect(s.effectiveWeight == share)
    }

    @Test func theSplitIsSymmetricAndBounded() {
        for n in 1...12 {
            for w in 1...99 {
                let a = ReplicaSplit(weight: w, replicas: n), b = ReplicaSplit(weight: 100 - w, replicas: n)
                #expect(a.candidate == b.stable && a.stable == b.candidate, "\(w)% of \(n)")
                #expect((1...n).contains(a.candidate) && (1...n).contains(a.stable))
                // The larger weight keeps every Pod: capacity never falls below one version's full size.
                #expect(max(a.candidate, a.stable) == n)
            }
        }
    }
}
