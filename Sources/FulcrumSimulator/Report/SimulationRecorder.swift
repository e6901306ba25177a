import Synchronization

/// Everything the simulation measures, from every task at once: control-plane call latencies and errors, lock-step
/// steps of each phase, request progress, placements received and applied. `closeInterval` turns the last
/// interval's figures into a timeline row.
final class SimulationRecorder: Sendable {
    enum Call: String, CaseIterable, Sendable {
        case telemetry
        case prefillAssignment = "prefill_assignment"
        case decodeAssignment = "decode_assignment"
        case placementPoll = "placement_poll"
        case placementAck = "placement_ack"
    }

    struct Steps: Sendable {
        var count = 0
        var meanCost = 0.0
        var maxCost = 0.0
        var tokens = 0
        var busySeconds = 0.0

        var efficiency: Double? { maxCost > 0 ? meanCost / maxCost : nil }

        mutating func add(_ other: Steps) {
            count += other.count
            meanCost += other.meanCost
            maxCost += other.maxCost
            tokens += other.tokens
            busySeconds += other.busySeconds
        }
    }

    struct Counts: Sendable {
        var arrived = 0
        var prefillAssigned = 0
        var prefilled = 0
        var decodeAssigned = 0
        var finished = 0
        /// Requests a dead rank lost, sent again under a new id.
        var resent = 0
        var heldBack = 0
        var noCapacity = 0
        var noEligible = 0
        var errors = 0
        var placementsApplied = 0
        var movedSlots = 0
        /// Calls a standby answered with the leader's address, sent again there.
        var leaderChanges = 0

        mutating func add(_ other: Counts) {
            arrived += other.arrived
            prefillAssigned += other.prefillAssigned
            prefilled += other.prefilled
            decodeAssigned += other.decodeAssigned
            finished += other.finished
            resent += other.resent
            heldBack += other.heldBack
            noCapacity += other.noCapacity
            noEligible += other.noEligible
            errors += other.errors
            placementsApplied += other.placementsApplied
            movedSlots += other.movedSlots
            leaderChanges += other.leaderChanges
        }
    }

    private struct State {
        var latencies: [Call: [Double]] = [:]
        var calls: [Call: Int] = [:]
        var failedCalls: [Call: Int] = [:]
        var errorSamples: [String] = []
        var interval = Counts()
        var total = Counts()
        var prefillSteps = Steps()
        var decodeSteps = Steps()
        var prefillTotal = Steps()
        var decodeTotal = Steps()
        /// Steps while arrivals ran: the balance figures of the report leave out the drain, whose dwindling
        /// load says nothing of the balancers.
        var prefillBalance = Steps()
        var decodeBalance = Steps()
        var countBalance = true
        var ttft: [Double] = []
        var endToEnd: [Double] = []
        /// A rolling sample of finished request ids, for reading Fulcrum's ledger back.
        var finishedSample: [String] = []
        var finishedCount = 0
    }

    static let sampleSize = 200

    private let state = Mutex(State())

    func call(_ call: Call, seconds: Double, failed: Bool = false) {
        state.withLock {
            $0.latencies[call, default: []].append(seconds)
            $0.calls[call, default: 0] += 1
            if failed { $0.failedCalls[call, default: 0] += 1 }
        }
    }

    /// An error the run hit; the first 20 are kept word for word for the report.
    func error(_ message: String) {
        state.withLock {
            $0.interval.errors += 1
            if $0.errorSamples.count < 20 { $0.errorSamples.append(message) }
        }
    }

    func count(_ update: (inout Counts) -> Void) {
        state.withLock { update(&$0.interval) }
    }

    func step(_ role: ClusterShape.Role, _ steps: Steps) {
        state.withLock {
            if role == .prefill { $0.prefillSteps.add(steps) } else { $0.decodeSteps.add(steps) }
            guard $0.countBalance else { return }
            if role == .prefill { $0.prefillBalance.add(steps) } else { $0.decodeBalance.add(steps) }
        }
    }

    func stopBalanceTotals() { state.withLock { $0.countBalance = false } }

    func finished(_ id: String, ttft: Double, endToEnd: Double) {
        state.withLock {
            $0.interval.finished += 1
            $0.ttft.append(ttft)
            $0.endToEnd.append(endToEnd)
            if $0.finishedSample.count < Self.sampleSize {
                $0.finishedSample.append(id)
            } else {
                $0.finishedSample[$0.finishedCount % Self.sampleSize] = id
            }
            $0.finishedCount += 1
        }
    }

    var finishedSample: [String] { state.withLock { $0.finishedSample } }

    struct Interval: Sendable {
        var counts: Counts
        var prefill: Steps
        var decode: Steps
    }

    /// The figures since the previous call, folded into the totals.
    func closeInterval() -> Interval {
        state.withLock {
            let interval = Interval(counts: $0.interval, prefill: $0.prefillSteps, decode: $0.decodeSteps)
            $0.total.add($0.interval)
            $0.prefillTotal.add($0.prefillSteps)
            $0.decodeTotal.add($0.decodeSteps)
            $0.interval = Counts()
            $0.prefillSteps = Steps()
            $0.decodeSteps = Steps()
            return interval
        }
    }

    struct Totals: Sendable {
        var counts: Counts
        var prefill: Steps
        var decode: Steps
        var prefillBalance: Steps
        var decodeBalance: Steps
        var latencies: [Call: [Double]]
        var calls: [Call: Int]
        var failedCalls: [Call: Int]
        var errorSamples: [String]
        var ttft: [Double]
        var endToEnd: [Double]
    }

    /// Totals so far, including the open interval.
    func totals() -> Totals {
        state.withLock {
            var counts = $0.total
            counts.add($0.interval)
            var prefill = $0.prefillTotal
            prefill.add($0.prefillSteps)
            var decode = $0.decodeTotal
            decode.add($0.decodeSteps)
            return Totals(
                counts: counts, prefill: prefill, decode: decode, prefillBalance: $0.prefillBalance,
                decodeBalance: $0.decodeBalance, latencies: $0.latencies, calls: $0.calls,
                failedCalls: $0.failedCalls, errorSamples: $0.errorSamples, ttft: $0.ttft, endToEnd: $0.endToEnd)
        }
    }
}
