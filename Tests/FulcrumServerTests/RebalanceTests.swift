import FulcrumCore
import FulcrumServer
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// The expert-parallel balancer end to end: telemetry in, a rebalance, a published version out to parked polls,
/// and its history.
@Suite("Rebalancing")
struct RebalanceTests {
    /// 2 nodes x 2 GPUs, 3 MoE layers, 8 experts in one group (the global policy) + 4 redundant: 3 slots per GPU.
    /// The initial table puts expert i % 8 in slot i: rank 0 holds 0 1 2, rank 1 3 4 5, rank 2 6 7 0, rank 3 1 2 3.
    static let unitBody = """
        {"id": "u", "role": "decode", "nodes": 2, "gpusPerNode": 2,
         "model": {"moeLayers": 3, "routedExperts": 8, "expertGroups": 1}, "redundantExperts": 4}
        """

    static func setUp(_ client: some TestClientProtocol) async throws {
        #expect(try await client.request(.post, "/v1/units", body: unitBody).status == .created)
        for rank in 0..<4 {
            let registered = try await client.request(
                .put, "/v1/workers/w\(rank)", body: workerJSON(unit: "u", node: rank / 2, gpu: rank % 2))
            #expect(registered.status == .created)
        }
    }

    /// Expert 3 (slot 0 of rank 1 and slot 2 of rank 3) takes 900 tokens per replica, every other slot 100: ranks 1
    /// and 3 carry 1,100 tokens a layer, ranks 0 and 2 300.
    static func report(rank: Int, seq: Int) -> String {
        let row = (0..<3).map { local in (rank == 1 && local == 0) || (rank == 3 && local == 2) ? 900 : 100 }
        let slots = "[" + Array(repeating: "[\(row.map(String.init).joined(separator: ","))]", count: 3).joined(separator: ",") + "]"
        return WorkerProtocolTests.telemetry(seq: seq, slotTokens: slots)
    }

    static func reportAll(_ client: some TestClientProtocol, seq: Int, ranks: Range<Int> = 0..<4) async throws {
        for rank in ranks {
            let answer = try await client.request(.post, "/v1/workers/w\(rank)/telemetry", body: report(rank: rank, seq: seq))
            #expect(answer.status == .accepted)
        }
    }

    @Test(arguments: StoreKind.available)
    func aRebalanceIsProposedThenPublishedToParkedPollsAndRecorded(kind: StoreKind) async throws {
        // Workers that report once must outlive the test on a loaded machine (a dead rank changes the next plan).
        try await withApp(kind, workerTimeout: .seconds(120)) { client in
            try await Self.setUp(client)
            expectError(
                try await client.request(.post, "/v1/units/u/rebalance", body: #"{"dryRun": true}"#), .conflict,
                "no_expert_load", field: "unit")
            // A dry run leaves no trace; a failed rebalance shows in the metrics, not only in the log.
            #expect(!String(decoding: try await client.raw(.get, "/metrics"), as: UTF8.self).contains("fulcrum_eplb_last_rebalance"))
            expectError(try await client.request(.post, "/v1/units/u/rebalance", body: "{}"), .conflict, "no_expert_load", field: "unit")
            let failed = String(decoding: try await client.raw(.get, "/metrics"), as: UTF8.self)
            #expect(failed.contains(#"fulcrum_eplb_last_rebalance{unit="u",role="decode",outcome="failed"} 1"#), "\(failed)")
            #expect(failed.contains(#"fulcrum_eplb_last_rebalance{unit="u",role="decode",outcome="published"} 0"#))
            #expect(failed.contains("fulcrum_eplb_last_rebalance_age_seconds{"))
            let json = try await client.request(.get, "/v1/metrics")
            let last = ((json["units"] as? [[String: Any]])?.first?["eplb"] as? [String: Any])?["lastRebalance"] as? [String: Any]
            #expect(last?["decision"] as? String == "failed" && (last?["error"] as? String)?.contains("no expert load") == true)
            try await Self.reportAll(client, seq: 1)

            let dryRun = try await client.request(.post, "/v1/units/u/rebalance", body: #"{"dryRun": true}"#)
            #expect(dryRun.status == .ok)
            #expect(dryRun["decision"] as? String == "dry_run" && dryRun["published"] as? Bool == false)
            #expect(dryRun["basedOn"] as? Int == 1 && dryRun["version"] == nil && dryRun["trigger"] as? String == "manual")
            let before = try #require(dryRun["before"] as? [String: Any])
            let after = try #require(dryRun["after"] as? [String: Any])
            // 3 layers x a peak of 1,100 tokens against a mean of 700.
            #expect(before["peakLoad"] as? Double == 3_300 && before["meanLoad"] as? Double == 2_100)
            #expect((after["peakLoad"] as? Double ?? .infinity) < 3_300)
            #expect((dryRun["improvement"] as? Double ?? 0) > 0.2)
            let window = try #require(dryRun["window"] as? [String: Any])
            #expect(window["reports"] as? Int == 4 && window["totalTokens"] as? Double == 3 * 2_800)
            #expect(try await client.request(.get, "/v1/units/u/placement")["version"] as? Int == 1)

            // A worker parked on version 1 gets the published table the moment it lands.
            let proposal = try #require(dryRun["phy2log"] as? [[Int]])
            let (published, polled) = try await withThrowingTaskGroup(of: JSONResponse?.self) { group in
                group.addTask {
                    let response = try await client.execute(
                        uri: "/v1/workers/w0/placement?wait=20", method: .get, headers: [.ifNoneMatch: "\"1\"", .authorization: TestTokens.workerBearer])
                    return JSONResponse(
                        status: response.status, headers: response.headers,
                        json: try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)))
                }
                // The poll is parked (in flight, waiting) when the publish comes.
                #expect(try await waitUntil(within: .seconds(10)) { try await client.parkedPolls(unit: "u") == 1 })
                let published = try await client.request(.post, "/v1/units/u/rebalance", body: #"{"dryRun": false}"#)
                let polled = try await group.next() ?? nil
                return (published, try #require(polled))
            }
            #expect(published.status == .created && published.headers[.location] == "/v1/units/u/placements/2")
            #expect(published["decision"] as? String == "published" && published["version"] as? Int == 2)
            #expect(published["phy2log"] as? [[Int]] == proposal)
            #expect(polled.status == .ok && polled["version"] as? Int == 2)
            #expect(polled["slots"] as? [[Int]] == proposal.map { Array($0[0..<3]) })

            // The migration plan: every changed slot once, its expert, a source that held it in version 1, rounds in
            // which no rank sends or receives twice; the worker's answer carries its own part.
            let plan = try await client.request(.get, "/v1/units/u/placements/2/plan")
            #expect(plan["fromVersion"] as? Int == 1 && plan["version"] as? Int == 2)
            let transfers = try #require(plan["transfers"] as? [[String: Any]])
            let initialRow = try #require((try await client.request(.get, "/v1/units/u/placements/1")["phy2log"] as? [[Int]])?.first)
            var changed = 0
            for layer in proposal.indices {
                for slot in proposal[layer].indices where proposal[layer][slot] != initialRow[slot] { changed += 1 }
            }
            #expect(transfers.count == changed && published["moved"] as? Int == changed)
            var perRound: [Int: (receivers: Set<Int>, senders: Set<Int>)] = [:]
            for transfer in transfers {
                let (layer, rank, slot) = (transfer["layer"] as? Int ?? -1, transfer["rank"] as? Int ?? -1, transfer["slot"] as? Int ?? -1)
                let expert = transfer["expert"] as? Int ?? -1
                #expect(proposal[layer][rank * 3 + slot] == expert)
                if let source = transfer["source"] as? Int {
                    #expect(initialRow[(source * 3)..<(source * 3 + 3)].contains(expert) && source != rank)
                }
                let round = transfer["round"] as? Int ?? -1
                var seen = perRound[round] ?? ([], [])
                #expect(seen.receivers.insert(rank).inserted)
                if let source = transfer["source"] as? Int { #expect(seen.senders.insert(source).inserted) }
                perRound[round] = seen
            }
            let rounds = try #require(plan["rounds"] as? [[String: Any]])
            #expect(rounds.compactMap { $0["transfers"] as? Int }.reduce(0, +) == transfers.count)
            #expect(plan["bytes"] as? Int == transfers.count * (plan["expertBytes"] as? Int ?? 0))
            let mine = try #require(polled["transfers"] as? [[String: Any]])
            #expect(mine.count == transfers.count { $0["rank"] as? Int == 0 || $0["source"] as? Int == 0 })
            #expect(polled["transferRounds"] as? Int == rounds.count)
            let startUp = try await client.request(.get, "/v1/units/u/placements/1/plan")
            #expect((startUp["transfers"] as? [Any])?.isEmpty == true && startUp["fromVersion"] == nil)
            expectError(try await client.request(.get, "/v1/units/u/placements/9/plan"), .notFound, "placement_not_found", field: "version")
            expectError(try await client.request(.get, "/v1/units/u/placements/x/plan"), .badRequest, "invalid_field", field: "version")

            // Nothing changed since: the same load proposes the same table, and nothing is published.
            let again = try await client.request(.post, "/v1/units/u/rebalance", body: "{}")
            #expect(again.status == .ok && again["decision"] as? String == "unchanged" && again["moved"] as? Int == 0)

            let history = try await client.request(.get, "/v1/units/u/placements")
            let entries = try #require(history["placements"] as? [[String: Any]])
            #expect(entries.compactMap { $0["version"] as? Int } == [2, 1])
            #expect(entries.compactMap { $0["trigger"] as? String } == ["manual", "initial"])
            #expect(history["nextBefore"] == nil)
            let prediction = try #require(entries.first?["prediction"] as? [String: Any])
            #expect(prediction["moved"] as? Int == published["moved"] as? Int)
            #expect(prediction["balancednessAfter"] as? Double == after["balancedness"] as? Double)
            #expect((entries.first?["window"] as? [String: Any])?["reports"] as? Int == 4)
            #expect(entries.first?["basedOn"] as? Int == 1)

            let firstPage = try await client.request(.get, "/v1/units/u/placements?limit=1")
            #expect((firstPage["placements"] as? [[String: Any]])?.count == 1 && firstPage["nextBefore"] as? Int == 2)
            let lastPage = try await client.request(.get, "/v1/units/u/placements?limit=1&before=2")
            #expect((lastPage["placements"] as? [[String: Any]])?.first?["version"] as? Int == 1)

            let two = try await client.request(.get, "/v1/units/u/placements/2")
            #expect(two["phy2log"] as? [[Int]] == proposal && two["trigger"] as? String == "manual")
            #expect(two["slotsPerGpu"] as? Int == 3 && two["unit"] as? String == "u")
            let one = try await client.request(.get, "/v1/units/u/placements/1")
            #expect(one["trigger"] as? String == "initial" && (one["phy2log"] as? [[Int]])?.first?.first == 0)
            expectError(try await client.request(.get, "/v1/units/u/placements/3"), .notFound, "placement_not_found", field: "version")
        }
    }

    @Test func badRebalanceAndHistoryRequestsAreRefused() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client)
            try await Self.reportAll(client, seq: 1)
            for body in [#"{"dryRun": "yes"}"#, #"{"dryRun": 1}"#] {
                expectError(try await client.request(.post, "/v1/units/u/rebalance", body: body), .badRequest, "invalid_type", field: "dryRun")
            }
            expectError(try await client.request(.post, "/v1/units/u/rebalance", body: "[1"), .badRequest, "malformed_json")
            // A misspelt dryRun must not publish.
            expectError(
                try await client.request(.post, "/v1/units/u/rebalance", body: #"{"dry_run": true}"#), .badRequest,
                "unknown_field", field: "dry_run")
            expectError(try await client.request(.post, "/v1/units/ghost/rebalance", body: "{}"), .notFound, "unit_not_found")
            expectError(try await client.request(.get, "/v1/units/u/placements/zero"), .badRequest, "invalid_field", field: "version")
            expectError(try await client.request(.get, "/v1/units/u/placements/0"), .badRequest, "invalid_field", field: "version")
            expectError(try await client.request(.get, "/v1/units/u/placements?limit=0"), .badRequest, "invalid_field", field: "limit")
            expectError(try await client.request(.get, "/v1/units/u/placements?limit=501"), .badRequest, "invalid_field", field: "limit")
            expectError(try await client.request(.get, "/v1/units/u/placements?before=x"), .badRequest, "invalid_field", field: "before")
            expectError(try await client.request(.get, "/v1/units/ghost/placements"), .notFound, "unit_not_found")
            // None of it published anything.
            #expect(try await client.request(.get, "/v1/units/u/placement")["version"] as? Int == 1)
        }
    }

    /// A scheduled rebalance publishes only when the balance it buys before the next one repays copying the weights.
    @Test func theScheduleHoldsAPlanWhoseCopyCostsMoreThanItSaves() async throws {
        var configuration = WorkerProtocolTests.configuration(timeout: .seconds(120))
        configuration.rebalanceInterval = .seconds(1)
        let clock = ManualClock()
        try await runApp(configuration, clock: clock) { client in
            try await Self.setUp(client)
            // 16 GB experts over a 10 MB/s link: hours of copying against a second's gain.
            let policy = try await client.request(
                .put, "/v1/units/u/policy", body: #"{"policy": {"expertBytes": 16000000000, "linkGBps": 0.01}}"#)
            #expect(policy.status == .ok)
            #expect((policy["effective"] as? [String: Any])?["linkGBps"] as? Double == 0.01)
            try await Self.reportAll(client, seq: 1)
            var metrics = ""
            _ = try await advancing(clock, by: .milliseconds(100)) {
                metrics = String(decoding: try await client.raw(.get, "/metrics"), as: UTF8.self)
                return metrics.contains(#"outcome="held_by_cost"} 1"#)
            }
            #expect(metrics.contains(#"fulcrum_eplb_last_rebalance{unit="u",role="decode",outcome="held_by_cost"} 1"#))
            #expect(try await client.request(.get, "/v1/units/u/placement")["version"] as? Int == 1)
            // The held solve's record says why: what the copy would cost against what it would save.
            let units = try #require(try await client.request(.get, "/v1/metrics")["units"] as? [[String: Any]])
            let eplb = try #require(units.first { $0["unit"] as? String == "u" }?["eplb"] as? [String: Any])
            let held = try #require(eplb["lastRebalance"] as? [String: Any])
            #expect(held["decision"] as? String == "held_by_cost")
            let cost = try #require(held["transfer"] as? [String: Any])
            #expect((cost["bytes"] as? Int ?? 0) > 0)
            #expect((cost["seconds"] as? Double ?? 0) > (cost["gainSeconds"] as? Double ?? .infinity))
            // A manual rebalance is the operator's call: it publishes, and says what the copy costs.
            let manual = try await client.request(.post, "/v1/units/u/rebalance", body: "{}")
            #expect(manual["decision"] as? String == "published", "\(manual.status) \(manual.error?.code ?? "") \(manual.error?.message ?? "")")
            let transfer = try #require(manual["transfer"] as? [String: Any])
            let rounds = try #require(transfer["rounds"] as? Int)
            #expect(rounds > 0 && transfer["bytes"] as? Int == (transfer["transfers"] as? Int ?? 0) * 16_000_000_000)
            #expect(abs((transfer["seconds"] as? Double ?? 0) - Double(rounds) * 1_600) < 1e-6)
            #expect((transfer["gainSeconds"] as? Double ?? .infinity) < 1)
            // The published version's record keeps the same estimate.
            let history = try await client.request(.get, "/v1/units/u/placements")
            let newest = try #require((history["placements"] as? [[String: Any]])?.first)
            #expect(newest["version"] as? Int == manual["version"] as? Int)
            #expect((newest["transfer"] as? [String: Any])?["bytes"] as? Int == transfer["bytes"] as? Int)
            #expect((newest["transfer"] as? [String: Any])?["rounds"] as? Int == rounds)
        }
    }

    @Test func theScheduleRepublishesOnlyWhenTheGainBeatsTheThreshold() async throws {
        var configuration = WorkerProtocolTests.configuration()
        configuration.rebalanceInterval = .seconds(1)
        let clock = ManualClock()
        try await runApp(configuration, clock: clock) { client in
            try await Self.setUp(client)
            try await Self.reportAll(client, seq: 1)
            var history: [[String: Any]] = []
            _ = try await advancing(clock, by: .milliseconds(100)) {
                history = try await client.request(.get, "/v1/units/u/placements")["placements"] as? [[String: Any]] ?? []
                return history.count >= 2
            }
            #expect(history.compactMap { $0["trigger"] as? String } == ["schedule", "initial"])
            let improvement = (history.first?["prediction"] as? [String: Any])?["improvement"] as? Double ?? 0
            #expect(improvement > 0.05)
            // Two more scheduled solves over the same load find nothing worth publishing.
            func last() async throws -> [String: Any] {
                let units = try await client.request(.get, "/v1/metrics")["units"] as? [[String: Any]] ?? []
                let eplb = units.first { $0["unit"] as? String == "u" }?["eplb"] as? [String: Any]
                return eplb?["lastRebalance"] as? [String: Any] ?? [:]
            }
            for _ in 0..<2 {
                let before = try await last()["at"] as? String
                var solve: [String: Any] = [:]
                let solved = try await advancing(clock, by: .milliseconds(100)) {
                    solve = try await last()
                    return solve["at"] as? String != before
                }
                #expect(solved && solve["trigger"] as? String == "schedule", "\(solve)")
                #expect(solve["decision"] as? String != "published", "\(solve)")
            }
            #expect(try await client.request(.get, "/v1/units/u/placement")["version"] as? Int == 2)
        }
    }

    @Test func aDeadRankIsPlacedAroundAtOnceAndTakenBackWhenItReturns() async throws {
        let configuration = WorkerProtocolTests.configuration(timeout: .seconds(10))
        let clock = ManualClock()
        try await runApp(configuration, clock: clock) { client in
            try await Self.setUp(client)
            // w3 falls silent; the others keep reporting, every 250 ms of the clock, until the balancer has placed
            // around it.
            var placement = try await client.request(.get, "/v1/units/u/placement")
            var seq = 0
            _ = try await advancing(clock, by: .milliseconds(250)) {
                seq += 1
                try await Self.reportAll(client, seq: seq, ranks: 0..<3)
                placement = try await client.request(.get, "/v1/units/u/placement")
                return placement["excludedRanks"] as? [Int] == [3]
            }
            #expect(placement["excludedRanks"] as? [Int] == [3] && placement["version"] as? Int == 2)
            let table = try #require(placement["phy2log"] as? [[Int]])
            for row in table {
                // Every expert has a replica on ranks 0-2; rank 3 keeps what it held.
                #expect(Set(row[0..<9]) == Set(0..<8))
                #expect(Array(row[9..<12]) == [1, 2, 3])
            }
            let entry = (try await client.request(.get, "/v1/units/u/placements/2"))
            #expect(entry["trigger"] as? String == "worker_change" && entry["excludedRanks"] as? [Int] == [3])
            let poll = try await client.request(.get, "/v1/workers/w0/placement")
            #expect(poll["excludedRanks"] as? [Int] == [3])

            // w3 reports again: the next version serves on all four ranks.
            _ = try await advancing(clock, by: .milliseconds(250)) {
                seq += 1
                try await Self.reportAll(client, seq: seq)
                placement = try await client.request(.get, "/v1/units/u/placement")
                return placement["version"] as? Int != 2
            }
            #expect(placement["version"] as? Int == 3 && placement["excludedRanks"] as? [Int] == [])
            #expect(try await client.request(.get, "/v1/units/u/placements/3")["trigger"] as? String == "worker_change")
        }
    }
}

extension RebalanceTests {
    @Test func anOperatorsOwnExclusionsAreLeftAlone() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await Self.setUp(client)
            // Rank 2 (slots 6-8) left out: every expert still has a slot on ranks 0, 1 and 3.
            let row = [0, 1, 2, 3, 4, 5, 6, 7, 0, 6, 7, 3]
            let table = "[" + Array(repeating: "[\(row.map(String.init).joined(separator: ","))]", count: 3).joined(separator: ",") + "]"
            let published = try await client.request(
                .post, "/v1/units/u/placements", body: #"{"phy2log": \#(table), "excludedRanks": [2]}"#)
            #expect(published.status == .created && published["excludedRanks"] as? [Int] == [2])
            // Two more checks have finished: at least one began after the publish, and left rank 2 out.
            let checks = try await client.eplbChecks()
            #expect(try await advancing(clock, by: .seconds(1)) { try await client.eplbChecks() >= checks + 2 })
            let exposition = String(decoding: try await client.raw(.get, "/metrics"), as: UTF8.self)
            let line = exposition.split(separator: "\n").first { $0.hasPrefix("fulcrum_eplb_checks_completed ") }
            #expect(line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= Double(checks + 2) } == true, "\(line ?? "none")")
            let current = try await client.request(.get, "/v1/units/u/placement")
            #expect(current["version"] as? Int == 2 && current["excludedRanks"] as? [Int] == [2])
            #expect(try await client.request(.get, "/v1/units/u/placements/2")["trigger"] as? String == "explicit")
            // Excluding a rank that holds an expert's only slot (rank 1: experts 4 and 5) is refused.
            expectError(
                try await client.request(.post, "/v1/units/u/placements", body: #"{"phy2log": \#(table), "excludedRanks": [1]}"#),
                .badRequest, "invalid_field", field: "phy2log[0]")
        }
    }
}
