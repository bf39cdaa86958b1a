#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Opens the ledger the configuration names, without connecting yet (connection and migrations happen on
/// first use, so start-up stays fast).
///
/// - Parameters:
///   - databaseURL: `postgres://...`, `postgresql://...` or a libpq keyword string (`host=... dbname=...`)
///     selects Postgres; nil or empty selects SQLite at `home/deployer.db`.
///   - home: the agent's state directory; created with mode 0700 when missing (SQLite only).
/// - Throws: `.database` when `home` cannot be created or the URL is not one of the accepted forms.
public func openStore(databaseURL: String?, home: String) throws(StoreError) -> any DeploymentStore {
    let url = trimmed(databaseURL ?? "")
    if url.isEmpty {
        try makeDirectories(home)
        let path = home.hasSuffix("/") ? home + "deployer.db" : home + "/deployer.db"
        return SQLiteStore(path: path)
    }
    if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") || url.contains("=") {
        return try PostgresStore(connectionString: url)
    }
    throw StoreError(
        .database, "MODEL_DEPLOYER_DATABASE_URL must start with postgres:// or postgresql://, or be a libpq keyword string")
}

/// `mkdir -p` with mode 0700 for the directories it creates.
private func makeDirectories(_ path: String) throws(StoreError) {
    guard !path.isEmpty else { throw StoreError(.database, "empty home directory") }
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/", omittingEmptySubsequences: true) {
        current += "/" + part
        var st = stat()
        if stat(current, &st) == 0 {
            if (st.st_mode & S_IFMT) != S_IFDIR { throw StoreError(.database, "\(current) exists and is not a directory") }
            continue
        }
        if mkdir(current, 0o700) != 0 && errno != EEXIST {
            throw StoreError(.database, "cannot create \(current): \(String(cString: strerror(errno)))")
        }
    }
}

/// `s` without leading and trailing ASCII white space.
func trimmed(_ s: String) -> String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    guard let start = s.firstIndex(where: { !isSpace($0) }), let end = s.lastIndex(where: { !isSpace($0) }) else { return "" }
    return String(s[start...end])
}
