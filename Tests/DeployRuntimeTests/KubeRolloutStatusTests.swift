@testable import DeployRuntime
import JSON
import Testing

@Suite struct KubeRolloutStatusTests {
    static func deployment(generation: Int64 = 2, observed: Int64 = 2, replicas: Int64 = 2, total: Int64 = 2, updated: Int64 = 2,
                           ready: Int64 = 2, available: Int64 = 2, conditions: [JSONValue] = []) -> JSONValue {
        ["metadata": ["name": "d", "generation": .int(generation)],
         "spec": ["replicas": .int(replicas), "progressDeadlineSeconds": 120],
         "status": ["observedGeneration": .int(observed), "replicas": .int(total), "updatedReplicas": .int(updated),
                    "readyReplicas": .int(ready), "availableReplicas": .int(available), "conditions": .array(conditions)]]
    }

    static func pod(_ name: String, waiting: String? = nil, message: String? = nil, restarts: Int64 = 0,
                    scheduled: (status: String, message: String)? = nil, node: String? = nil, ready: Bool = false) -> JSONValue {
        var containers: [JSONValue] = []
        if let waiting {
            containers.append(["name": "bento", "image": "registry.example/iris:1", "restartCount": .int(restarts),
                               "state": ["waiting": ["reason": .string(waiting), "message": .string(message)]],
                               "lastState": ["terminated": ["exitCode": 1]]])
        }
        var conditions: [JSONValue] = [["type": "Ready", "status": ready ? "True" : "False"]]
        if let scheduled {
            conditions.append(["type": "PodScheduled", "status": .string(scheduled.status), "reason": "Unschedulable",
                               "message": .string(scheduled.message)])
        }
        return ["metadata": ["name": .string(name)], "spec": ["nodeName": .string(node)],
                "status": ["phase": "Pending", "conditions": .array(conditions), "containerStatuses": .array(containers)]]
    }

    @Test func availableWhenEveryReplicaIsUpdatedAndAvailable() {
        let v = KubeRolloutStatus.evaluate(deployment: Self.deployment(), pods: [], events: [])
        #expect(v.phase == .available && v.reason == "d: 2 of 2 replicas available")
    }

    @Test func waitsForTheControllerToObserveTheGeneration() {
        let v = KubeRolloutStatus.evaluate(deployment: Self.deployment(generation: 3, observed: 2), pods: [], events: [])
        #expect(v.phase == .progressing && v.reason.contains("generation 3"))
    }

    @Test func oldReplicasStillRunningIsNotAvailable() {
        let v = KubeRolloutStatus.evaluate(deployment: Self.deployment(total: 3), pods: [], events: [])
        #expect(v.phase == .progressing && v.reason.contains("1 old replicas"))
    }

    @Test func deadlineExceededIsStuckWithTheCauseInWords() {
        let dep = Self.deployment(ready: 0, available: 0, conditions: [
            ["type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"]])
        let v = KubeRolloutStatus.evaluate(deployment: dep, pods: [Self.pod("p1", waiting: "ImagePullBackOff", message: "Back-off pulling image")],
                                           events: [])
        #expect(v.phase == .stuck && v.stuckKind == .imagePull)
        #expect(v.reason == "d made no progress for 120 s (ProgressDeadlineExceeded): 0 of 2 replicas available; Pod p1 cannot pull registry.example/iris:1 (ImagePullBackOff: Back-off pulling image)")
    }

    @Test func diagnosisPrefersWhatNeedsAPerson() {
        let pods = [Self.pod("a", node: "n1"), Self.pod("b", waiting: "CrashLoopBackOff", restarts: 4, node: "n1"),
                    Self.pod("c", scheduled: ("False", "0/3 nodes are available: 3 Insufficient memory."))]
        let d = KubeRolloutStatus.diagnose(pods: pods, events: [])
        #expect(d?.kind == .crashLoop)
        #expect(d?.words == "container bento of Pod b keeps crashing (CrashLoopBackOff, 4 restarts, last exit code 1)")
        let u = KubeRolloutStatus.diagnose(pods: [pods[0], pods[2]], events: [])
        #expect(u?.kind == .unschedulable && u?.words.contains("Insufficient memory") == true)
        #expect(KubeRolloutStatus.diagnose(pods: [Self.pod("x")], events: [])?.kind == .notScheduled)
        #expect(KubeRolloutStatus.diagnose(pods: [pods[0]], events: [])?.kind == .notReady)
        #expect(KubeRolloutStatus.diagnose(pods: [Self.pod("r", node: "n", ready: true)], events: []) == nil)
    }

    @Test func eventsNameImagePullFailures() {
        let ev: JSONValue = ["involvedObject": ["kind": "Pod", "name": "p"], "reason": "Failed",
                             "message": "Failed to pull image \"x\": rpc error: ErrImagePull"]
        #expect(KubeRolloutStatus.diagnose(pods: [Self.pod("p", node: "n")], events: [ev])?.kind == .imagePull)
    }

    @Test func replicaFailureIsStuck() {
        let dep = Self.deployment(updated: 0, ready: 0, available: 0, conditions: [
            ["type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "pods \"x\" is forbidden: exceeded quota"]])
        let v = KubeRolloutStatus.evaluate(deployment: dep, pods: [], events: [])
        #expect(v.phase == .stuck && v.stuckKind == .replicaFailure && v.reason.contains("exceeded quota"))
    }

    @Test func missingStatusIsProgressingNotACrash() {
        let v = KubeRolloutStatus.evaluate(deployment: ["metadata": ["name": "d"]], pods: [.null, "x"], events: [.null])
        #expect(v.phase == .progressing)
    }
}
