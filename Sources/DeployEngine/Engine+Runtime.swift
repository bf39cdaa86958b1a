import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension Engine {
    /// The runtime ports of `environment`: a Kubernetes environment's own, else the local ones.
    func ports(for environment: String) -> RuntimePorts {
        runtime.ports(for: environment)
    }

    /// Every distinct set of ports (the local one first), for the sweeps that are not about one environment.
    var allPorts: [RuntimePorts] {
        [runtime] + runtime.environments.keys.sorted().compactMap { runtime.environments[$0] }
    }

    /// Where a deployment of `version` runs, for `deploy.status` and `history.query`: `{"kind": "local"}`,
    /// or the cluster's context and namespace with the names of its Deployment and Service.
    public func runtimeDescription(modelName: String, environment: String, version: String) -> JSONValue {
        guard let k = policy.environment(environment)?.runtime.kubernetes else { return ["kind": "local"] }
        let deployment = try? KubeNames.deploymentName(modelName: modelName, environment: environment, version: version)
        let service = try? KubeNames.serviceName(modelName: modelName, environment: environment)
        return ["kind": "kubernetes", "context": .string(k.context), "namespace": .string(k.namespace),
                "deployment": .string(deployment), "service": .string(service)]
    }
}

extension RolloutRunner {
    /// The ports of the deployment's environment.
    var ports: RuntimePorts { engine.ports(for: record.environment) }
}
