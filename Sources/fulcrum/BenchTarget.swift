import ArgumentParser
import Foundation

/// The Fulcrum a load benchmark drives, and the process to measure: flags shared by `bench protocol` and
/// `bench assign`.
struct BenchTarget: ParsableArguments {
    @Option(help: "Fulcrum to load (scripts/bench-protocol and scripts/bench-assign start one on PostgreSQL).")
    var target = "http://127.0.0.1:8080"

    @Option(help: "PID of the Fulcrum process, to report its CPU time and memory.")
    var serverPid: Int32?

    func validate() throws {
        guard URLComponents(string: target)?.host != nil else { throw ValidationError("--target must be a URL") }
    }

    var host: String { URLComponents(string: target)?.host ?? "127.0.0.1" }
    var port: Int { URLComponents(string: target)?.port ?? 80 }
}
