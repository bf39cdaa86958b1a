/// A canary step on a runtime without a weighted router (Kubernetes: one Service selecting the Pods of
/// both versions, kube-proxy spreading connections over them): the share is the ratio of the versions'
/// ready Pods, so a weight becomes two replica counts and the share actually served is approximate.
///
/// Neither version ever runs more Pods than the environment's `replicas` (n), and the side with the larger
/// weight keeps all n, so capacity never falls below one version's full size during a canary:
/// - weight w <= 50: stable n, candidate `round(n * w / (100 - w))`, at least 1 and at most n;
/// - weight w > 50: candidate n, stable `round(n * (100 - w) / w)`, at least 1 and at most n;
/// - weight 100: candidate n, stable 0 (it leaves the Service; the runtime keeps it warm elsewhere).
///
/// With n = 1 every step below 100 is one Pod each (50 %); the larger n, the closer the share to the weight.
public struct ReplicaSplit: Sendable, Hashable {
    /// The candidate's Pods.
    public var candidate: Int
    /// The stable version's Pods.
    public var stable: Int

    /// The split of `weight` percent over `replicas` Pods per version.
    public init(weight: Int, replicas: Int) {
        let n = max(1, replicas)
        let w = min(max(weight, 0), 100)
        func clamp(_ x: Double) -> Int { min(n, max(1, Int(x.rounded()))) }
        switch w {
        case 100: (candidate, stable) = (n, 0)
        case 0: (candidate, stable) = (0, n)
        case ...50: (candidate, stable) = (clamp(Double(n * w) / Double(100 - w)), n)
        default: (candidate, stable) = (n, clamp(Double(n * (100 - w)) / Double(w)))
        }
    }

    /// The candidate's share of the Pods, percent (rounded): what kube-proxy's even spread gives it.
    public var effectiveWeight: Int {
        let all = candidate + stable
        return all == 0 ? 0 : Int((Double(candidate * 100) / Double(all)).rounded())
    }
}
