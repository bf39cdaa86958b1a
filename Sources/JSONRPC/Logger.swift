#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JSON

/// Severity of a log line.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug = 0, info, warning, error, off

    /// Parses `debug`, `info`, `warning`/`warn`, `error`, `off`.
    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        case "off", "none": self = .off
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        case .off: return "off"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Writes JSON lines to a file descriptor (stderr by default): `{"ts":..., "level":..., "msg":..., ...fields}`.
///
/// Each line is one `write(2)`, so lines from different threads never interleave.
public struct Logger: Sendable {
    public var level: LogLevel
    public var fd: Int32
    public var component: String

    public init(level: LogLevel = .info, fd: Int32 = 2, component: String = "model-deployer") {
        self.level = level
        self.fd = fd
        self.component = component
    }

    /// Logs `message` with extra structured `fields` when `level` is enabled.
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String, _ fields: [String: JSONValue] = [:]) {
        guard level >= self.level, level != .off else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var o = fields
        o["ts"] = .double(Double(ts.tv_sec) + Double(ts.tv_nsec / 1_000_000) / 1000)
        o["level"] = .string(level.name)
        o["msg"] = .string(message())
        o["component"] = .string(component)
        var line = JSONValue.object(o).jsonBytes
        line.append(0x0A)
        line.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = write(fd, p.baseAddress! + off, p.count - off)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    public func debug(_ m: @autoclosure () -> String, _ f: [String: JSONValue] = [:]) { log(.debug, m(), f) }
    public func info(_ m: @autoclosure () -> String, _ f: [String: JSONValue] = [:]) { log(.info, m(), f) }
    public func warning(_ m: @autoclosure () -> String, _ f: [String: JSONValue] = [:]) { log(.warning, m(), f) }
    public func error(_ m: @autoclosure () -> String, _ f: [String: JSONValue] = [:]) { log(.error, m(), f) }
}
