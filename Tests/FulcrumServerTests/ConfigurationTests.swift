import FulcrumCore
import FulcrumServer
import FulcrumStore
import Foundation
import Logging
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    @Test func defaultsRunTheDevStoreOnLoopback() throws {
        let configuration = try FulcrumConfiguration.resolve(flags: .init(), environment: [:])
        #expect(configuration.host == "127.0.0.1" && configuration.port == 8080)
        #expect(configuration.database == nil && configuration.logLevel == .info)
    }

    @Test func flagsWinOverEnvironmentWhichWinsOverDefaults() throws {
        let environment = [
            "FULCRUM_HOST": "0.0.0.0", "FULCRUM_PORT": "9000", "FULCRUM_LOG_LEVEL": "DEBUG",
            "DATABASE_URL": "postgres://env@db/env", "FULCRUM_DATABASE_MAX_CONNECTIONS": "",
        ]
        let configuration = try FulcrumConfiguration.resolve(
            flags: ["port": "9100", "database-url": "postgres://flag@db/flag"], environment: environment)
        #expect(configuration.host == "0.0.0.0" && configuration.port == 9100)
        #expect(configuration.logLevel == .debug && configuration.database?.username == "flag")
        #expect(configuration.databaseMaxConnections == 10)
    }

    @Test func durationsTakeUnits() throws {
        var flags = FulcrumConfiguration.Flags()
        flags["worker-timeout"] = "1.5m"
        flags["telemetry-stale-after"] = "500ms"
        let configuration = try FulcrumConfiguration.resolve(
            flags: flags, environment: ["FULCRUM_TELEMETRY_RETENTION": "12h", "FULCRUM_TELEMETRY_SAMPLE_INTERVAL": "5"])
        #expect(configuration.workerTimeout == .seconds(90) && configuration.telemetryStaleAfter == .milliseconds(500))
        #expect(configuration.telemetryRetention == .seconds(43_200) && configuration.telemetrySampleInterval == .seconds(5))
        var policy = FulcrumConfiguration.Flags()
        policy["stale-policy"] = "ignore"
        #expect(throws: FulcrumConfiguration.Problems.self) { try FulcrumConfiguration.resolve(flags: policy, environment: [:]) }
        #expect(try FulcrumConfiguration.resolve(flags: .init(), environment: ["FULCRUM_STALE_POLICY": "exclude"]).stalenessPolicy == .exclude)
        for bad in ["-2s", "soon", "2 weeks", "nan", "1e30s"] {
            var flags = FulcrumConfiguration.Flags()
            flags["worker-timeout"] = bad
            #expect(throws: FulcrumConfiguration.Problems.self) {
                try FulcrumConfiguration.resolve(flags: flags, environment: [:])
            }
        }
        var inverted = FulcrumConfiguration.Flags()
        inverted["worker-timeout"] = "1s"
        inverted["telemetry-stale-after"] = "2s"
        #expect(throws: FulcrumConfiguration.Problems.self) { try FulcrumConfiguration.resolve(flags: inverted, environment: [:]) }
    }

    @Test func replicaSettingsAreCheckedTogether() throws {
        let defaults = try FulcrumConfiguration.resolve(flags: .init(), environment: [:])
        #expect(defaults.lease == .seconds(3) && defaults.leaseRenewal == .seconds(1) && !defaults.replicaID.isEmpty)
        #expect(defaults.advertisedURL == "http://127.0.0.1:8080")
        var everywhere = defaults
        everywhere.host = "0.0.0.0"
        #expect(everywhere.advertisedURL == "http://\(ProcessInfo.processInfo.hostName):8080")
        let set = try FulcrumConfiguration.resolve(
            flags: ["replica-id": "fulcrum-0", "advertise-url": "http://fulcrum-0.fulcrum:8080/"],
            environment: ["FULCRUM_LEASE": "5s", "FULCRUM_LEASE_RENEWAL": "500ms"])
        #expect(set.replicaID == "fulcrum-0" && set.advertisedURL == "http://fulcrum-0.fulcrum:8080")
        #expect(set.lease == .seconds(5) && set.leaseRenewal == .milliseconds(500))
        // Every problem at once: a bad id, a URL that is not one, and a lease shorter than two renewals.
        do {
            _ = try FulcrumConfiguration.resolve(
                flags: ["replica-id": "a b", "advertise-url": "fulcrum-0:8080", "lease": "1s", "lease-renewal": "800ms"],
                environment: [:])
            Issue.record("accepted")
        } catch {
            #expect(error.messages.count == 3, "\(error.messages)")
            #expect(error.messages.contains { $0.contains("--replica-id") })
            #expect(error.messages.contains { $0.contains("--advertise-url") })
            #expect(error.messages.contains { $0.contains("at least twice its renewal interval") })
        }
    }

    @Test func rebalancingSettingsAreChecked() throws {
        let defaults = try FulcrumConfiguration.resolve(flags: .init(), environment: [:])
        #expect(defaults.rebalanceInterval == .seconds(600) && defaults.rebalanceMinGain == 0.05)
        #expect(defaults.rebalanceMaxMoves == nil)
        var flags = FulcrumConfiguration.Flags()
        flags["rebalance-interval"] = "0"
        flags["rebalance-max-moves"] = "2000"
        let set = try FulcrumConfiguration.resolve(flags: flags, environment: ["FULCRUM_REBALANCE_MIN_GAIN": "0.1"])
        #expect(set.rebalanceInterval == .zero && set.rebalanceMinGain == 0.1 && set.rebalanceMaxMoves == 2_000)
        for (interval, gain, moves) in [("5s", "0.05", "10"), ("0.4ms", "0.05", "10"), ("10m", "1.5", "10"), ("10m", "-0.1", "10"), ("10m", "0.05", "0")] {
            var bad = FulcrumConfiguration.Flags()
            bad["rebalance-interval"] = interval
            bad["rebalance-min-gain"] = gain
            bad["rebalance-max-moves"] = moves
            #expect(throws: FulcrumConfiguration.Problems.self) { try FulcrumConfiguration.resolve(flags: bad, environment: [:]) }
        }
    }

    @Test func everyProblemIsReportedAtOnceWithoutSecrets() {
        let environment = ["DATABASE_URL": "mysql://root:hunter2@db/x", "FULCRUM_LOG_LEVEL": "loud"]
        #expect {
            try FulcrumConfiguration.resolve(
                flags: ["host": "", "port": "70000", "database-max-connections": "0", "max-body-bytes": "lots"],
                environment: environment)
        } throws: { error in
            guard let problems = error as? FulcrumConfiguration.Problems else { return false }
            let text = problems.description
            return problems.messages.count == 6 && text.contains("--port") && text.contains("DATABASE_URL")
                && text.contains("FULCRUM_LOG_LEVEL") && text.contains("--host") && !text.contains("hunter2")
        }
    }

    @Test func flagsAreReadFromTheCommandLineOfTheDeclaredSettings() throws {
        let flags = try FulcrumConfiguration.flags(from: ["--port", "9000", "--worker-timeout=3s", "--host", "::1"])
        #expect(flags == ["port": "9000", "worker-timeout": "3s", "host": "::1"])
        #expect(try FulcrumConfiguration.resolve(flags: flags, environment: [:]).workerTimeout == .seconds(3))
        #expect {
            try FulcrumConfiguration.flags(from: ["--prot", "9000", "--tokens", "x:admin:y", "stray", "--port"])
        } throws: { error in
            let messages = (error as? FulcrumConfiguration.Problems)?.messages ?? []
            // A secret's setting is environment only: it never shows in a process listing.
            return messages == [
                "unknown option '--prot'", "unexpected argument '9000'", "unknown option '--tokens'",
                "unexpected argument 'x:admin:y'", "unexpected argument 'stray'", "--port needs a value",
            ]
        }
        #expect(throws: FulcrumConfiguration.Problems.self) {
            try FulcrumConfiguration.flags(from: ["--port", "1"], of: FulcrumConfiguration.commonSettings)
        }
        // A flag after a flag is the next flag, not a value; `=` says otherwise.
        #expect {
            try FulcrumConfiguration.flags(from: ["--host", "--port", "9000"])
        } throws: { error in
            (error as? FulcrumConfiguration.Problems)?.messages == ["--host needs a value"]
        }
        #expect(try FulcrumConfiguration.flags(from: ["--host=--odd"]) == ["host": "--odd"])
    }

    /// The README's configuration table is the settings' own list: same flags, variables and defaults, same order.
    @Test func theReadmeTableListsEverySettingAsDeclared() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let section = try #require(text.components(separatedBy: "## Configuration").dropFirst().first)
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `--") || $0.hasPrefix("| (none)") }
        let documented = rows.map { row -> [String] in
            row.split(separator: "|").prefix(3).map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: "") }
        }
        let declared = FulcrumConfiguration.settings.map { setting in
            [setting.onCommandLine ? "--\(setting.flag)" : "(none)", setting.environment, setting.defaultText ?? "unset"]
        }
        #expect(documented == declared)
    }
}
