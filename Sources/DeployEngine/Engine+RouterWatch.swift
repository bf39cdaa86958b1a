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
    /// Whether `endpointURL` (the router's stable port) answers BentoML's readiness probe now.
    func endpointAnswers(_ endpointURL: String) async -> Bool {
        guard let port = Planner.port(of: endpointURL) else { return false }
        guard let resp = try? await HTTPClient.request(method: "GET", port: port, path: "/readyz", timeoutMs: 1000) else { return false }
        return resp.status == 200
    }

    /// Restarts the router when routes are configured but its master is gone (killed, crashed), after
    /// killing workers orphaned by a killed master, which would otherwise keep the ports. The live
    /// deployments it serves get an event saying so. Returns whether a repair was needed.
    @discardableResult
    public func repairRouterIfDown() async -> Bool {
        guard router.needsRepair else { return false }
        let routes = router.allRoutes()
        log("the router is down; restarting it", ["routes": .int(Int64(routes.count))])
        let outcome: String
        do throws(RuntimeError) {
            try await router.ensureRunning()
            outcome = "the router was down (its nginx master was gone); restarted it with its \(routes.count) route(s)"
        } catch {
            outcome = "the router is down and could not be restarted: \(error.code): \(error.message)"
        }
        log(outcome, [:])
        for route in routes {
            guard let entry = try? store.registry(modelName: route.modelName, environment: route.environment),
                let r = try? store.deployment(id: entry.deploymentId)
            else { continue }
            noteOrLog(r, step: "router_repair", message: outcome)
        }
        return true
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

    /// Appends an informational event; when the ledger refuses it, the agent's log still has it.
    func noteOrLog(_ r: DeploymentRecord, step: String, message: String, data: JSONValue = .object([:])) {
        do {
            _ = try store.appendEvent(event(r.deploymentId, step: step, actor: "model-deployer", message: message, data: data))
        } catch {
            log("an event could not be recorded", ["deployment_id": .string(r.deploymentId), "step": .string(step),
                                                   "message": .string(message), "error": .string(error.message)])
        }
    }
}
