import FulcrumCore
import FulcrumServer
import FulcrumStore
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
            flags: .init(port: "9100", databaseURL: "postgres://flag@db/flag"), environment: environment)
        #expect(configuration.host == "0.0.0.0" && configuration.port == 9100)
        #expect(configuration.logLevel == .debug && configuration.database?.username == "flag")
        #expect(configuration.databaseMaxConnections == 10)
    }

    @Test func durationsTakeUnits() throws {
        var flags = FulcrumConfiguration.Flags()
        flags.workerTimeout = "1.5m"
        flags.telemetryStaleAfter = "500ms"
        let configuration = try FulcrumConfiguration.resolve(
            flags: flags, environment: ["FULCRUM_TELEMETRY_RETENTION": "12h", "FULCRUM_TELEMETRY_SAMPLE_INTERVAL": "5"])
        #expect(configuration.workerTimeout == .seconds(90) && configuration.telemetryStaleAfter == .milliseconds(500))
        #expect(configuration.telemetryRetention == .seconds(43_200) && configuration.telemetrySampleInterval == .seconds(5))
        var policy = FulcrumConfiguration.Flags()
        policy.stalePolicy = "ignore"
        #expect(throws: FulcrumConfiguration.Problems.self) { try FulcrumConfiguration.resolve(flags: policy, environment: [:]) }
        #expect(try FulcrumConfiguration.resolve(flags: .init(), environment: ["FULCRUM_STALE_POLICY": "exclude"]).stalenessPolicy == .exclude)
        for bad in ["-2s", "soon", "2 weeks", "nan", "1e30s"] {
            var flags = FulcrumConfiguration.Flags()
            flags.workerTimeout = bad
            #expect(throws: FulcrumConfiguration.Problems.self) {
                try FulcrumConfiguration.resolve(flags: flags, environment: [:])
            }
        }
        var inverted = FulcrumConfiguration.Flags()
        inverted.workerTimeout = "1s"
        inverted.telemetryStaleAfter = "2s"
        #expect(throws: FulcrumConfiguration.Problems.self) { try FulcrumConfiguration.resolve(flags: inverted, environment: [:]) }
    }

    @Test func rebalancingSettingsAreChecked() throws {
        let defaults = try FulcrumConfiguration.resolve(flags: .init(), environment: [:])
        #expect(defaults.rebalanceInterval == .seconds(600) && defaults.rebalanceMinGain == 0.05)
        #expect(defaults.rebalanceMaxMoves == nil)
        var flags = FulcrumConfiguration.Flags()
        flags.rebalanceInterval = "0"
        flags.rebalanceMaxMoves = "2000"
        let set = try FulcrumConfiguration.resolve(flags: flags, environment: ["FULCRUM_REBALANCE_MIN_GAIN": "0.1"])
        #expect(set.rebalanceInterval == .zero && set.rebalanceMinGain == 0.1 && set.rebalanceMaxMoves == 2_000)
        for (interval, gain, moves) in [("5s", "0.05", "10"), ("0.4ms", "0.05", "10"), ("10m", "1.5", "10"), ("10m", "-0.1", "10"), ("10m", "0.05", "0")] {
            var bad = FulcrumConfiguration.Flags()
            bad.rebalanceInterval = interval
            bad.rebalanceMinGain = gain
            bad.rebalanceMaxMoves = moves
            #expect(throws: FulcrumConfiguration.Problems.self) { try FulcrumConfiguration.resolve(flags: bad, environment: [:]) }
        }
    }

    @Test func everyProblemIsReportedAtOnceWithoutSecrets() {
        let environment = ["DATABASE_URL": "mysql://root:hunter2@db/x", "FULCRUM_LOG_LEVEL": "loud"]
        #expect {
            try FulcrumConfiguration.resolve(
                flags: .init(host: "", port: "70000", databaseMaxConnections: "0", maxBodyBytes: "lots"),
                environment: environment)
        } throws: { error in
            guard let problems = error as? FulcrumConfiguration.Problems else { return false }
            let text = problems.description
            return problems.messages.count == 6 && text.contains("--port") && text.contains("DATABASE_URL")
                && text.contains("FULCRUM_LOG_LEVEL") && text.contains("--host") && !text.contains("hunter2")
        }
    }
}
