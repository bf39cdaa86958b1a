extension Planner {
    /// The plan's sentence for an environment that runs on Kubernetes: where the version goes, what its
    /// Pods request, and how traffic moves (the Service's selector).
    static func kubernetesSentence(_ input: PlanInput, _ k: KubernetesSettings, memoryMB: Int, cpu: Double?, gpu: Int, canary: Bool = false) -> String {
        var pod = "\(memoryMB) MiB"
        if let cpu { pod += ", \(fmt(cpu)) CPU" }
        if gpu > 0 { pod += ", \(gpu) GPU\(gpu == 1 ? "" : "s")" }
        let whereTo = "runtime kubernetes: \(input.modelVersion) runs as a Deployment of \(k.replicas) Pod\(k.replicas == 1 ? "" : "s") (\(pod) each, image from \(k.image)) in namespace \(k.namespace)"
            + (k.context.map { " of kubeconfig context \($0)" } ?? " of kubectl's current context")
        let traffic: String
        if let live = input.live, canary {
            traffic = "traffic moves to it from \(live.version) by the canary's replica steps (below), after it is available and validated through the API server's service proxy"
        } else if let live = input.live {
            traffic = "the Service's selector moves from \(live.version) to \(input.modelVersion) once it is available and validated through the API server's service proxy; \(live.version)'s Deployment stays scaled up while warm"
        } else {
            traffic = "a Service on port \(k.servicePort) selects it once it is available; smoke tests and probes go through the API server's service proxy"
        }
        return "\(whereTo); the cluster's scheduler places the Pods, so this host's free memory is not checked; \(traffic); a rollout with no progress for \(k.progressDeadlineSeconds) s is stuck"
    }

    /// The plan's sentence for a canary on Kubernetes: each weight as the replica counts that approximate
    /// it (``ReplicaSplit``), what happens to the warm previous version, and where the analysis's figures
    /// come from (probes of each version's Pods: nothing counts a Service's traffic per version).
    static func kubernetesCanarySentence(_ input: PlanInput, _ k: KubernetesSettings, _ c: CanaryConfig, live: LiveFacts) -> String {
        let steps = c.steps.map { w -> String in
            let s = ReplicaSplit(weight: w, replicas: k.replicas)
            if w >= 100 { return "100%: \(s.candidate) of \(input.modelVersion) alone" }
            return "\(w)%: \(s.candidate) Pod\(s.candidate == 1 ? "" : "s") of \(input.modelVersion) beside \(s.stable) of \(live.version) (\(s.effectiveWeight)% of the Pods)"
        }
        let requests = max(c.analysis.minRequests, Analysis.minLatencySamples)
        var out = "on Kubernetes the canary splits traffic by replica ratio, so its shares are approximate: the Service selects the Pods of both versions and kube-proxy spreads connections over them, not weighted requests (exact weights would need Gateway API HTTPRoute weights); steps \(steps.joined(separator: ", "))"
        if let warm = live.warmPrevious {
            out += "; the warm previous \(warm.version) is scaled to 0 first, so the Service selects only these two"
        }
        out += "; nothing counts a Service's traffic per version, so each analysis interval judges \(requests) probe requests the agent sends to each version's Pods through the API server's pod proxy (the smoke test's call, or the health path), not user traffic"
        return out
    }
}
