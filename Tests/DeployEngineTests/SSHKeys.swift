import Foundation

/// Real OpenSSH keys for a test, made by `ssh-keygen` in a temporary directory, and signatures made with them.
final class SSHKeys: @unchecked Sendable {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "sshkeys-" + UUID().uuidString.prefix(8).lowercased()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    @discardableResult
    static func run(_ args: [String], stdin: Data? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        if let stdin {
            let inPipe = Pipe()
            p.standardInput = inPipe
            try p.run()
            inPipe.fileHandleForWriting.write(stdin)
            try inPipe.fileHandleForWriting.close()
        } else {
            p.standardInput = FileHandle.nullDevice
            try p.run()
        }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw Failed(description: "ssh-keygen \(args.joined(separator: " ")): \(text)") }
        return text
    }

    /// Makes an ed25519 key pair named `name`; returns the private key path.
    @discardableResult
    func key(_ name: String) throws -> String {
        let path = "\(dir)/\(name)"
        try Self.run(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path])
        return path
    }

    func publicKey(_ name: String) throws -> String {
        let text = try String(contentsOfFile: "\(dir)/\(name).pub", encoding: .utf8)
        return text.split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// Writes an allowed_signers file listing `entries` (principal, key name, namespaces option).
    func allowedSigners(_ entries: [(principal: String, key: String, namespaces: String)]) throws -> String {
        let path = "\(dir)/allowed_signers-\(UUID().uuidString.prefix(6))"
        let lines = try entries.map { "\($0.principal) namespaces=\"\($0.namespaces)\" \(try publicKey($0.key))" }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `ssh-keygen -Y sign` over `message` with key `name` in `namespace`: the armored signature.
    func sign(_ message: [UInt8], with name: String, namespace: String = "model-deployer") throws -> String {
        let file = "\(dir)/msg-\(UUID().uuidString.prefix(8))"
        try Data(message).write(to: URL(fileURLWithPath: file))
        try Self.run(["-Y", "sign", "-f", "\(dir)/\(name)", "-n", namespace, file])
        return try String(contentsOfFile: file + ".sig", encoding: .utf8)
    }

    func fingerprint(_ name: String) throws -> String {
        let out = try Self.run(["-l", "-f", "\(dir)/\(name).pub"])
        return String(out.split(separator: " ")[1])
    }
}
