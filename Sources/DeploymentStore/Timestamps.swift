#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The ledger stores instants with microsecond precision: integer Unix microseconds in SQLite,
/// `timestamptz` in Postgres.
enum Micros {
    /// Unix microseconds of `date`, rounded to the nearest microsecond.
    static func from(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    /// The instant `micros` Unix microseconds after the epoch.
    static func date(_ micros: Int64) -> Date {
        // Split so the Double keeps microsecond precision for any plausible date.
        let seconds = micros.quotientAndRemainderFlooring(1_000_000)
        return Date(timeIntervalSince1970: Double(seconds.q) + Double(seconds.r) / 1_000_000)
    }

    /// RFC 3339 UTC with six fractional digits, e.g. `2025-01-02T03:04:05.000006Z`.
    static func rfc3339(_ micros: Int64) -> String {
        let (days, rem) = micros.quotientAndRemainderFlooring(86_400_000_000)
        let (y, m, d) = civil(fromDays: days)
        let secOfDay = rem / 1_000_000
        let frac = rem % 1_000_000
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secOfDay / 3600, 2)):\(pad(secOfDay / 60 % 60, 2)):"
            + "\(pad(secOfDay % 60, 2)).\(pad(frac, 6))Z"
    }

    /// Howard Hinnant's `civil_from_days`: days since 1970-01-01 -> (year, month, day).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

extension Int64 {
    /// Floor division and the matching non-negative remainder.
    func quotientAndRemainderFlooring(_ d: Int64) -> (q: Int64, r: Int64) {
        var q = self / d
        var r = self % d
        if r < 0 { q -= 1; r += d }
        return (q, r)
    }
}
