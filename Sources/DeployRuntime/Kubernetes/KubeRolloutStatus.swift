import JSON

/// Where a Deployment's rollout stands, computed from its status (and its Pods for the why).
public enum KubeRolloutPhase: String, Sendable, Hashable {
    /// The controller has not caught up yet, or Pods are still coming.
    case progressing
    /// Every desired replica is updated and available.
    case available
    /// The controller gave up (`ProgressDeadlineExceeded`) or cannot create Pods (`ReplicaFailure`).
    case stuck
}

/// Why Pods of a rollout are not becoming ready, as a stable kind plus words.
public enum KubeStuckKind: String, Sendable, Hashable {
    /// The image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`).
    case imagePull = "image_pull"
    /// No node can take the Pod (`PodScheduled=False/Unschedulable`, `FailedScheduling`).
    case unschedulable
    /// The container keeps exiting (`CrashLoopBackOff`, restarts).
    case crashLoop = "crash_loop"
    /// The Pod has no node and no scheduling verdict (no scheduler or kubelet acted on it).
    case notScheduled = "not_scheduled"
    /// Scheduled and running but the readiness probe fails.
    case notReady = "not_ready"
    /// The ReplicaSet cannot create Pods (quota, admission).
    case replicaFailure = "replica_failure"
}

/// The verdict on one Deployment's rollout.
public struct KubeRolloutVerdict: Sendable, Hashable {
    /// Phase.
    public var phase: KubeRolloutPhase
    /// A sentence a person can act on.
    public var reason: String
    /// The most telling Pod problem, when one was found.
    public var stuckKind: KubeStuckKind?
    /// `spec.replicas`.
    public var desired: Int
    /// `status.updatedReplicas`.
    public var updated: Int
    /// `status.readyReplicas`.
    public var ready: Int
    /// `status.availableReplicas`.
    public var available: Int

    /// A verdict value.
    public init(phase: KubeRolloutPhase, reason: String, stuckKind: KubeStuckKind?, desired: Int, updated: Int, ready: Int, available: Int) {
        self.phase = phase
        self.reason = reason
        self.stuckKind = stuckKind
        self.desired = desired
        self.updated = updated
        self.ready = ready
        self.available = available
    }
}

/// Pure evaluation of a rollout, in the manner of `kubectl rollout status` plus a diagnosis of the Pods.
public enum KubeRolloutStatus {
    /// The verdict for `deployment` given its current `pods` and their `events` (any order, may be empty).
    public static func evaluate(deployment: JSONValue, pods: [JSONValue], events: [JSONValue]) -> KubeRolloutVerdict {
        let spec = deployment["spec"], status = deployment["status"]
        let name = deployment["metadata"]?["name"]?.stringValue ?? "?"
        let generation = deployment["metadata"]?["generation"]?.intValue ?? 0
        let observed = status?["observedGeneration"]?.intValue ?? 0
        let desired = Int(spec?["replicas"]?.intValue ?? 1)
        let total = Int(status?["replicas"]?.intValue ?? 0)
        let updated = Int(status?["updatedReplicas"]?.intValue ?? 0)
        let ready = Int(status?["readyReplicas"]?.intValue ?? 0)
        let available = Int(status?["availableReplicas"]?.intValue ?? 0)
        let deadline = spec?["progressDeadlineSeconds"]?.intValue
        func verdict(_ phase: KubeRolloutPhase, _ reason: String, _ kind: KubeStuckKind? = nil) -> KubeRolloutVerdict {
            KubeRolloutVerdict(phase: phase, reason: reason, stuckKind: kind, desired: desired, updated: updated, ready: ready, available: available)
        }
        let conditions = status?["conditions"]?.arrayValue ?? []
        func condition(_ type: String) -> JSONValue? { conditions.first { $0["type"]?.stringValue == type } }
        let diagnosis = diagnose(pods: pods, events: events)

        if observed < generation {
            return verdict(.progressing, "the deployment controller has not yet seen generation \(generation) of \(name) (observed \(observed))")
        }
        if let p = condition("Progressing"), p["status"]?.stringValue == "False",
           p["reason"]?.stringValue == "ProgressDeadlineExceeded" {
            var words = "\(name) made no progress for \(deadline.map { "\($0) s" } ?? "its progress deadline") (ProgressDeadlineExceeded): \(available) of \(desired) replicas available"
            if let d = diagnosis { words += "; \(d.words)" }
            return verdict(.stuck, words, diagnosis?.kind)
        }
        if let f = condition("ReplicaFailure"), f["status"]?.stringValue == "True" {
            let msg = f["message"]?.stringValue ?? f["reason"]?.stringValue ?? "unknown"
            return verdict(.stuck, "\(name) cannot create Pods: \(msg)", .replicaFailure)
        }
        if updated >= desired && available >= desired && total <= updated {
            return verdict(.available, desired == 0 ? "\(name) is scaled to 0" : "\(name): \(available) of \(desired) replicas available")
        }
        var words: String
        if updated < desired {
            words = "\(name): \(updated) of \(desired) replicas updated"
        } else if total > updated {
            words = "\(name): \(total - updated) old replicas are pending termination"
        } else {
            words = "\(name): \(available) of \(desired) replicas available"
        }
        if let d = diagnosis { words += "; \(d.words)" }
        return verdict(.progressing, words, diagnosis?.kind)
    }

    /// The most telling problem among `pods`: image pull beats crash loop beats unschedulable beats not
    /// scheduled beats not ready, because the earlier ones need a person and the later ones may resolve.
    public static func diagnose(pods: [JSONValue], events: [JSONValue]) -> (kind: KubeStuckKind, words: String)? {
        var found: [(kind: KubeStuckKind, words: String)] = []
        for pod in pods {
            let podName = pod["metadata"]?["name"]?.stringValue ?? "?"
            let podEvents = events.filter { $0["involvedObject"]?["name"]?.stringValue == podName }
            if let d = diagnose(pod: pod, name: podName, events: podEvents) { found.append(d) }
        }
        let order: [KubeStuckKind] = [.imagePull, .crashLoop, .unschedulable, .replicaFailure, .notScheduled, .notReady]
        guard let first = found.min(by: { order.firstIndex(of: $0.kind)! < order.firstIndex(of: $1.kind)! }) else { return nil }
        let same = found.filter { $0.kind == first.kind }.count
        return (first.kind, same > 1 ? "\(first.words) (and \(same - 1) more Pods alike)" : first.words)
    }

    private static func diagnose(pod: JSONValue, name: String, events: [JSONValue]) -> (kind: KubeStuckKind, words: String)? {
        let status = pod["status"]
        let containers = (status?["containerStatuses"]?.arrayValue ?? []) + (status?["initContainerStatuses"]?.arrayValue ?? [])
        for c in containers {
            let cname = c["name"]?.stringValue ?? "?"
            let waiting = c["state"]?["waiting"]
            let reason = waiting?["reason"]?.stringValue ?? ""
            let message = waiting?["message"]?.stringValue
            if ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"].contains(reason) {
                let image = c["image"]?.stringValue ?? "its image"
                return (.imagePull, "Pod \(name) cannot pull \(image) (\(reason)\(message.map { ": \($0)" } ?? ""))")
            }
            if reason == "CrashLoopBackOff" {
                let restarts = c["restartCount"]?.intValue ?? 0
                let last = c["lastState"]?["terminated"]
                let exit = last?["exitCode"]?.intValue.map { ", last exit code \($0)" } ?? ""
                return (.crashLoop, "container \(cname) of Pod \(name) keeps crashing (CrashLoopBackOff, \(restarts) restarts\(exit))")
            }
        }
        for e in events {
            let reason = e["reason"]?.stringValue ?? ""
            let message = e["message"]?.stringValue ?? ""
            if reason == "Failed" && (message.contains("ErrImagePull") || message.contains("pull image") || message.contains("ImagePullBackOff")) {
                return (.imagePull, "Pod \(name) cannot pull its image: \(message)")
            }
            if reason == "BackOff" && message.contains("restarting failed container") {
                return (.crashLoop, "Pod \(name) keeps crashing: \(message)")
            }
        }
        let conditions = status?["conditions"]?.arrayValue ?? []
        if let s = conditions.first(where: { $0["type"]?.stringValue == "PodScheduled" }), s["status"]?.stringValue == "False" {
            let msg = s["message"]?.stringValue ?? s["reason"]?.stringValue ?? "no reason given"
            return (.unschedulable, "Pod \(name) cannot be scheduled: \(msg)")
        }
        if let e = events.last(where: { $0["reason"]?.stringValue == "FailedScheduling" }) {
            return (.unschedulable, "Pod \(name) cannot be scheduled: \(e["message"]?.stringValue ?? "FailedScheduling")")
        }
        let phase = status?["phase"]?.stringValue ?? "Pending"
        if pod["spec"]?["nodeName"]?.stringValue == nil && !conditions.contains(where: { $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True" }) {
            return (.notScheduled, "Pod \(name) is \(phase) and has no node yet (no scheduler has placed it)")
        }
        if let r = conditions.first(where: { $0["type"]?.stringValue == "Ready" }), r["status"]?.stringValue != "True" {
            return (.notReady, "Pod \(name) is \(phase) but not ready\(r["message"]?.stringValue.map { ": \($0)" } ?? " (readiness probe on /readyz not passing)")")
        }
        return nil
    }
}
