import DeployCore
import DeployRuntime

extension DeployService {
    /// The runtime ports of each environment whose policy says `runtime: "kubernetes"`: one `KubeRuntime`
    /// per environment (its context and namespace), talking through kubectl (`MODEL_DEPLOYER_KUBECTL` or
    /// `kubectl` on PATH, with the agent's environment: KUBECONFIG applies). The `kubectl proxy` sockets
    /// go to `<home>/kube` (nothing starts before the first call).
    /// - Returns: a sentence naming the environment when one cannot be used (bad namespace or image
    ///   template, no kubectl).
    static func kubernetesPorts(_ policy: ApprovalPolicy, environment env: [String: String], home: String,
                                catalog: any ModelCatalog) -> Result<[String: RuntimePorts], ConfigurationError> {
        var out: [String: RuntimePorts] = [:]
        for name in policy.environments.keys.sorted() {
            guard let k = policy.environments[name]?.runtime.kubernetes else { continue }
            do throws(RuntimeError) {
                let target = KubeTarget(context: k.context, namespace: k.namespace, imageTemplate: k.image, replicas: k.replicas,
                                        progressDeadlineSeconds: k.progressDeadlineSeconds, containerPort: k.containerPort,
                                        servicePort: k.servicePort)
                try target.validate()
                let kubectl = try Kubectl(context: k.context, namespace: k.namespace, environment: env, stateDirectory: home + "/kube")
                out[name] = .kubernetes(try KubeRuntime(kubectl: kubectl, target: target), catalog: catalog)
            } catch {
                return .failure(ConfigurationError(message: "environment \(name) runs on Kubernetes but cannot be used: \(error.code): \(error.message)"))
            }
        }
        return .success(out)
    }
}
