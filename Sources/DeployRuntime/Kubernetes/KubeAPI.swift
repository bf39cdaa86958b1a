import JSON

/// The REST side of `Kubectl`'s proxy transport: which URL path each kind lives under, the query strings
/// of lists and writes, and the mapping of an API answer (HTTP status and the `Status` object Kubernetes
/// returns with every error) to the same stable codes the exec transport derives from kubectl's stderr.
///
/// Paths are built only from a namespace and names already validated (DNS-1123) and from the fixed kinds
/// below: no caller text reaches a path unchecked.
enum KubeAPI {
    /// One kind the agent reads or writes.
    struct Resource: Sendable, Hashable {
        /// `Deployment`.
        var kind: String
        /// `apps/v1`.
        var apiVersion: String
        /// `deployments`.
        var plural: String

        /// `/apis/apps/v1` or `/api/v1`.
        var groupPath: String { apiVersion.contains("/") ? "/apis/" + apiVersion : "/api/" + apiVersion }

        /// The collection in `namespace`.
        func collection(namespace: String) -> String { "\(groupPath)/namespaces/\(namespace)/\(plural)" }
    }

    /// The kinds the runtime uses, by the names kubectl accepts for them (singular, plural, kind).
    static let resources: [Resource] = [
        Resource(kind: "Deployment", apiVersion: "apps/v1", plural: "deployments"),
        Resource(kind: "ReplicaSet", apiVersion: "apps/v1", plural: "replicasets"),
        Resource(kind: "Service", apiVersion: "v1", plural: "services"),
        Resource(kind: "Pod", apiVersion: "v1", plural: "pods"),
        Resource(kind: "Endpoints", apiVersion: "v1", plural: "endpoints"),
        Resource(kind: "Event", apiVersion: "v1", plural: "events"),
        Resource(kind: "ServiceAccount", apiVersion: "v1", plural: "serviceaccounts"),
    ]

    /// The resource kubectl would understand by `name` (`deployment`, `deployments`, `Deployment`).
    /// - Throws: `kube_invalid_object` for a kind the agent does not use.
    static func resource(_ name: String) throws(RuntimeError) -> Resource {
        let n = name.lowercased()
        for r in resources where n == r.plural || n == r.kind.lowercased() || n + "s" == r.plural { return r }
        throw RuntimeError(code: "kube_invalid_object", message: "kind '\(name)' is not one the agent uses")
    }

    /// The resource of a manifest, from its `apiVersion` and `kind`.
    static func resource(of object: JSONValue) throws(RuntimeError) -> Resource {
        let kind = object["kind"]?.stringValue ?? ""
        let r = try resource(kind)
        guard r.kind == kind, object["apiVersion"]?.stringValue == r.apiVersion else {
            throw RuntimeError(code: "kube_invalid_object",
                               message: "manifest is \(object["apiVersion"]?.stringValue ?? "?")/\(kind), expected \(r.apiVersion)/\(r.kind)")
        }
        return r
    }

    /// A name the API accepts in a path: a DNS-1123 subdomain (lowercase alphanumerics, `-` and `.`, at most 253).
    /// - Throws: `invalid_name`.
    static func checkName(_ name: String) throws(RuntimeError) {
        let b = Array(name.utf8)
        let ok = (1...253).contains(b.count) && b.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
        } && b.first != UInt8(ascii: ".") && b.first != UInt8(ascii: "-") && name != "." && name != ".."
        guard ok else { throw RuntimeError(code: "invalid_name", message: "'\(name)' is not a valid Kubernetes object name") }
    }

    /// The path of one object.
    static func objectPath(_ r: Resource, namespace: String, name: String) throws(RuntimeError) -> String {
        try checkName(namespace)
        try checkName(name)
        return r.collection(namespace: namespace) + "/" + name
    }

    /// The path of a list, with `labelSelector` / `fieldSelector` when non-empty (percent-encoded).
    static func listPath(_ r: Resource, namespace: String, labelSelector: String, fieldSelector: String = "") throws(RuntimeError) -> String {
        try checkName(namespace)
        var query: [(String, String)] = []
        if !labelSelector.isEmpty { query.append(("labelSelector", labelSelector)) }
        if !fieldSelector.isEmpty { query.append(("fieldSelector", fieldSelector)) }
        return r.collection(namespace: namespace) + queryString(query)
    }

    /// `?k=v&...` with both sides percent-encoded, or "" when empty.
    static func queryString(_ items: [(String, String)]) -> String {
        items.isEmpty ? "" : "?" + items.map { percentEncode($0.0) + "=" + percentEncode($0.1) }.joined(separator: "&")
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters.
    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let unreserved = (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "~")
            if unreserved {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// Query of server-side apply: the agent's field manager, taking over conflicting fields.
    static let applyQuery = queryString([("fieldManager", Kubectl.fieldManager), ("force", "true")])
    /// Query of creates and patches.
    static let writeQuery = queryString([("fieldManager", Kubectl.fieldManager)])

    /// The body of a delete: dependents (ReplicaSets, Pods) go in the background, as `kubectl delete` does.
    static let deleteOptions: JSONValue = ["kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"]

    /// The items of a list answer, each given the `kind` and `apiVersion` a list leaves out (kubectl adds
    /// them too; callers tell kinds apart by them).
    static func items(ofList list: JSONValue, _ r: Resource) throws(RuntimeError) -> [JSONValue] {
        guard let items = list["items"]?.arrayValue else {
            throw RuntimeError(code: "kube_bad_response", message: "the API server's \(r.plural) list has no items")
        }
        return items.map { item in
            guard case .object(var o) = item else { return item }
            if o["kind"] == nil { o["kind"] = .string(r.kind) }
            if o["apiVersion"] == nil { o["apiVersion"] = .string(r.apiVersion) }
            return .object(o)
        }
    }

    /// Maps a non-2xx answer to the exec transport's codes: by the `Status` object's `reason` when the body
    /// is one (Kubernetes' stable `StatusReason`), else by the HTTP status; `kubectl proxy`'s own
    /// "cannot reach the API server" answers (502 and a dial error) are `kube_unreachable`.
    /// - Parameter what: the request in words (`PATCH service NAME`), for the message.
    static func classify(status: Int, body: [UInt8], what: String) -> RuntimeError {
        let parsed = try? JSONValue.parse(body)
        let isStatus = parsed?["kind"]?.stringValue == "Status"
        let reason = isStatus ? parsed?["reason"]?.stringValue ?? "" : ""
        let text: String
        if isStatus, let m = parsed?["message"]?.stringValue {
            text = m
        } else {
            let raw = String(decoding: body.prefix(2000), as: UTF8.self).trimmingSpaces
            text = body.count > 2000 ? raw + "..." : raw
        }
        let shown = "\(what): HTTP \(status)\(reason.isEmpty ? "" : " (\(reason))"): \(text)"
        // kubectl names a reason from the HTTP status when the body carries none; so does this.
        let byStatus = [400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                        422: "Invalid", 503: "ServiceUnavailable"]
        let dialError = !isStatus && ["dial tcp", "connection refused", "i/o timeout", "no such host", "context deadline exceeded"]
            .contains { text.contains($0) }
        let code: String
        switch reason.isEmpty ? byStatus[status] ?? "" : reason {
        case _ where dialError: code = "kube_unreachable"
        case "NotFound": code = "kube_not_found"
        case "Conflict", "AlreadyExists": code = "kube_conflict"
        // Also a JSON patch whose `test` operation failed (422 Invalid): the caller that sent the test
        // re-reads the object to tell a lost race from a bad patch.
        case "Invalid", "BadRequest": code = "kube_invalid_object"
        case "ServiceUnavailable": code = "kube_service_unavailable"
        case "Forbidden", "Unauthorized": code = "kube_forbidden"
        // Anything else (a model server's own 500 through the service proxy, a server Timeout): what
        // kubectl reports as a plain failure.
        default: code = "kubectl_failed"
        }
        return RuntimeError(code: code, message: shown)
    }
}
