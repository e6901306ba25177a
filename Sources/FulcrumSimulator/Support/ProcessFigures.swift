import Foundation

/// CPU time and resident memory of a process, from /proc.
public struct ProcessFigures: Sendable {
    public var cpuSeconds: Double
    public var rssMiB: Double

    public init?(pid: Int32) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        cpuSeconds = (user + system) / ticks
        let rssLine = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        let kib = rssLine.flatMap { Double($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        rssMiB = kib / 1_024
    }
}
