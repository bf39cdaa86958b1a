extension Planner {
    /// The plan's sentence for an environment that runs on Kubernetes: where the version goes, what its
    /// Pods request, and how traffic moves (the Service's selector).
    static func kubernetesSentence(_ input: PlanInput, _ k: KubernetesSettings, memoryMB: Int, cpu: Double?, gpu: Int) -> String {
        var pod = "\(memoryMB) MiB"
        if let cpu { pod += ", \(fmt(cpu)) CPU" }
        if gpu > 0 { pod += ", \(gpu) GPU\(gpu == 1 ? "" : "s")" }
        let whereTo = "runtime kubernetes: \(input.modelVersion) runs as a Deployment of \(k.replicas) Pod\(k.replicas == 1 ? "" : "s") (\(pod) each, image from \(k.image)) in namespace \(k.namespace)"
            + (k.context.map { " of kubeconfig context \($0)" } ?? " of kubectl's current context")
        let traffic: String
        if let live = input.live {
            traffic = "the Service's selector moves from \(live.version) to \(input.modelVersion) once it is available and validated through the API server's service proxy; \(live.version)'s Deployment stays scaled up while warm"
        } else {
            traffic = "a Service on port \(k.servicePort) selects it once it is available; smoke tests and probes go through the API server's service proxy"
        }
        return "\(whereTo); the cluster's scheduler places the Pods, so this host's free memory is not checked; \(traffic); a rollout with no progress for \(k.progressDeadlineSeconds) s is stuck"
    }
}
