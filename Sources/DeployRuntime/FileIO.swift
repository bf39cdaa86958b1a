#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

/// Small file helpers over Glibc (no Foundation file handles).
enum FileIO {
    /// The whole file, or nil if it cannot be read.
    static func readBytes(_ path: String, limit: Int = 64 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func readString(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes `bytes` to `path` via a temporary file in the same directory and `rename`, so readers never see
    /// a partial file.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(RuntimeError) {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io("cannot create \(tmp): \(errnoString())") }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errnoString(); close(fd); unlink(tmp)
                throw .io("cannot write \(tmp): \(e)")
            }
            off += n
        }
        fsync(fd)
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errnoString(); unlink(tmp)
            throw .io("cannot rename \(tmp) to \(path): \(e)")
        }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(RuntimeError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw .io("cannot create directory \(current): \(errnoString())")
            }
        }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Where the symbolic link at `path` points, or nil when it is not a readable link.
    static func linkTarget(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Entry names of a directory (without `.` and `..`), empty if unreadable.
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Total size of regular files below `path` (not following symlinks).
    static func treeSize(_ path: String) -> Int64 {
        var st = stat()
        guard lstat(path, &st) == 0 else { return 0 }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            return list(path).reduce(0) { $0 + treeSize(path + "/" + $1) }
        }
        return (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : 0
    }

    /// Removes a file or a directory tree (symlinks are removed, never followed).
    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in list(path) { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Ensures `link` is a symlink to `target` (replacing anything else at `link`).
    static func ensureSymlink(_ link: String, to target: String) throws(RuntimeError) {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(link, &buf, buf.count - 1)
        if n >= 0 {
            let current = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if current == target { return }
        }
        removeTree(link)
        guard symlink(target, link) == 0 else { throw .io("cannot link \(link) -> \(target): \(errnoString())") }
    }

    /// The last `bytes` bytes of a file as text (lossy UTF-8), empty if unreadable.
    static func tail(_ path: String, bytes: Int) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return "" }
        let start = max(0, Int(size) - max(0, bytes))
        var buf = [UInt8](repeating: 0, count: Int(size) - start)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard n > 0 else { return "" }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }
}

func errnoString(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
