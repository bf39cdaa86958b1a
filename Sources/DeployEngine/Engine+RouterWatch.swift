#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension Engine {
    /// Restarts the router when routes are configured but it is not running (killed, crashed); the local
    /// router first kills workers orphaned by a killed master, which would otherwise keep the ports. The
    /// live deployments it serves get an event saying so. Returns whether a repair was needed.
    @discardableResult
    public func repairRouterIfDown() async -> Bool {
        guard await router.needsRestart() else { return false }
        let routes = await router.routes()
        log("the router is down; restarting it", ["routes": .int(Int64(routes.count))])
        let outcome: String
        do throws(RuntimeError) {
            try await router.ensureRunning()
            outcome = "the router was down (its process was gone); restarted it with its \(routes.count) route(s)"
        } catch {
            outcome = "the router is down and could not be restarted: \(error.code): \(error.message)"
        }
        log(outcome, [:])
        for route in routes {
            let served: DeploymentRecord?
            do {
                served = try liveDeployment(route.modelName, route.environment)
            } catch {
                log("the router repair is not recorded: the ledger did not answer",
                    ["model_name": .string(route.modelName), "environment": .string(route.environment), "error": .string(error.message)])
                continue
            }
            guard let r = served else { continue }
            note(r, step: "router_repair", message: outcome)
        }
        return true
    }

    /// The deployment the registry names live for (model, environment), nil when none is.
    func liveDeployment(_ modelName: String, _ environment: String) throws(StoreError) -> DeploymentRecord? {
        try store.registry(modelName: modelName, environment: environment)
            .flatMap { entry throws(StoreError) in try store.deployment(id: entry.deploymentId) }
    }

    /// Checks the router every `interval` while the agent runs, so a router killed between calls is back
    /// within seconds rather than at the next call.
    public func watchRouter(every interval: Duration = .seconds(2)) {
        Task.detached(executorPreference: BlockingExecutor.shared) { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self else { return }
                await self.repairRouterIfDown()
            }
        }
    }
}
