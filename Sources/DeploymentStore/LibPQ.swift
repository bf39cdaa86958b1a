#if canImport(Glibc)
import Glibc
#endif
import CPostgres

/// libpq, bound at first use with `dlopen` rather than linked.
///
/// Linking libpq makes every start of the agent pay for loading and initialising its dependencies
/// (OpenSSL, GnuTLS, Kerberos, LDAP, p11-kit): about 5.5 ms of a 7.5 ms cold start, measured here. Most
/// agents use the embedded SQLite ledger and never need it, so it is loaded only when a Postgres store
/// connects. The declarations still come from `<libpq-fe.h>` through the `CPostgres` system library.
struct LibPQ: @unchecked Sendable {
    typealias CStrings = UnsafePointer<UnsafePointer<CChar>?>?
    let connectdbParams: @convention(c) (CStrings, CStrings, Int32) -> OpaquePointer?
    let finish: @convention(c) (OpaquePointer?) -> Void
    let status: @convention(c) (OpaquePointer?) -> ConnStatusType
    let setNoticeProcessor: @convention(c) (OpaquePointer?, PQnoticeProcessor?, UnsafeMutableRawPointer?) -> PQnoticeProcessor?
    private let _errorMessage: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    let execParams: @convention(c) (
        OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafePointer<Oid>?, CStrings, UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32
    ) -> OpaquePointer?
    let clear: @convention(c) (OpaquePointer?) -> Void
    let resultStatus: @convention(c) (OpaquePointer?) -> ExecStatusType
    let ntuples: @convention(c) (OpaquePointer?) -> Int32
    let nfields: @convention(c) (OpaquePointer?) -> Int32
    let getisnull: @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    let getlength: @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    let getvalue: @convention(c) (OpaquePointer?, Int32, Int32) -> UnsafeMutablePointer<CChar>?
    private let _resultErrorMessage: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    let resultErrorField: @convention(c) (OpaquePointer?, Int32) -> UnsafeMutablePointer<CChar>?
    // LISTEN/NOTIFY (``PostgresEventWaiter``): read what the socket holds, take one notification, free it.
    let consumeInput: @convention(c) (OpaquePointer?) -> Int32
    let notifies: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<PGnotify>?
    let socket: @convention(c) (OpaquePointer?) -> Int32
    let freemem: @convention(c) (UnsafeMutableRawPointer?) -> Void

    func errorMessage(_ conn: OpaquePointer?) -> String {
        _errorMessage(conn).map { String(cString: $0) } ?? ""
    }

    func resultErrorMessage(_ res: OpaquePointer?) -> String {
        _resultErrorMessage(res).map { String(cString: $0) } ?? ""
    }

    /// The library, loaded once; the error says what to install when it is missing.
    static let loaded: Result<LibPQ, StoreError> = load()

    /// The loaded library. Only valid after `require()` succeeded (every connection starts with it).
    static var api: LibPQ {
        guard case .success(let l) = loaded else { fatalError("libpq used before LibPQ.require()") }
        return l
    }

    /// Loads libpq, or explains why it cannot.
    static func require() throws(StoreError) -> LibPQ {
        try loaded.get()
    }

    private static func load() -> Result<LibPQ, StoreError> {
        var handle: UnsafeMutableRawPointer?
        for name in ["libpq.so.5", "libpq.so", "libpq.5.dylib", "libpq.dylib"] {
            handle = dlopen(name, RTLD_NOW | RTLD_LOCAL)
            if handle != nil { break }
        }
        guard let handle else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(StoreError(.database, "the Postgres ledger needs libpq (apt-get install libpq5): \(why)"))
        }
        var missing: [String] = []
        func sym<T>(_ name: String, _: T.Type) -> T? {
            guard let p = dlsym(handle, name) else { missing.append(name); return nil }
            return unsafeBitCast(p, to: T.self)
        }
        let l = (
            sym("PQconnectdbParams", (@convention(c) (CStrings, CStrings, Int32) -> OpaquePointer?).self),
            sym("PQfinish", (@convention(c) (OpaquePointer?) -> Void).self),
            sym("PQstatus", (@convention(c) (OpaquePointer?) -> ConnStatusType).self),
            sym("PQsetNoticeProcessor", (@convention(c) (OpaquePointer?, PQnoticeProcessor?, UnsafeMutableRawPointer?) -> PQnoticeProcessor?).self),
            sym("PQerrorMessage", (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?).self),
            sym("PQexecParams", (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafePointer<Oid>?, CStrings,
                                                 UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32) -> OpaquePointer?).self),
            sym("PQclear", (@convention(c) (OpaquePointer?) -> Void).self),
            sym("PQresultStatus", (@convention(c) (OpaquePointer?) -> ExecStatusType).self),
            sym("PQntuples", (@convention(c) (OpaquePointer?) -> Int32).self),
            sym("PQnfields", (@convention(c) (OpaquePointer?) -> Int32).self),
            sym("PQgetisnull", (@convention(c) (OpaquePointer?, Int32, Int32) -> Int32).self),
            sym("PQgetlength", (@convention(c) (OpaquePointer?, Int32, Int32) -> Int32).self),
            sym("PQgetvalue", (@convention(c) (OpaquePointer?, Int32, Int32) -> UnsafeMutablePointer<CChar>?).self),
            sym("PQresultErrorMessage", (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?).self),
            sym("PQresultErrorField", (@convention(c) (OpaquePointer?, Int32) -> UnsafeMutablePointer<CChar>?).self)
        )
        let listen = (
            sym("PQconsumeInput", (@convention(c) (OpaquePointer?) -> Int32).self),
            sym("PQnotifies", (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<PGnotify>?).self),
            sym("PQsocket", (@convention(c) (OpaquePointer?) -> Int32).self),
            sym("PQfreemem", (@convention(c) (UnsafeMutableRawPointer?) -> Void).self)
        )
        guard missing.isEmpty, let a = l.0, let b = l.1, let c = l.2, let d = l.3, let e = l.4, let f = l.5, let g = l.6,
            let h = l.7, let i = l.8, let j = l.9, let k = l.10, let m = l.11, let n = l.12, let o = l.13, let p = l.14,
            let q = listen.0, let r = listen.1, let s = listen.2, let t = listen.3
        else {
            return .failure(StoreError(.database, "the libpq found lacks \(missing.joined(separator: ", "))"))
        }
        return .success(LibPQ(
            connectdbParams: a, finish: b, status: c, setNoticeProcessor: d, _errorMessage: e, execParams: f, clear: g,
            resultStatus: h, ntuples: i, nfields: j, getisnull: k, getlength: m, getvalue: n, _resultErrorMessage: o,
            resultErrorField: p, consumeInput: q, notifies: r, socket: s, freemem: t))
    }
}
