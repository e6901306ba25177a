import Synchronization

/// The run's own record, beside the recorder's counters: the timeline, expert-balance samples and what each
/// failure did.
final class RunState: Sendable {
    struct Struck: Sendable {
        var failure: Failure
        var worker: String
        var at: Double
        var detectedAt: Double?
        /// kill: when Fulcrum last accepted a report of the worker, seconds into the run.
        var lastReportAt: Double?
    }

    private struct State {
        var timeline: [SimulationReport.Point] = []
        var expertSum = 0.0
        var expertCount = 0
        var expertSamples: [Double] = []
        var failures: [Struck] = []
    }

    private let state = Mutex(State())

    func expertSample(_ balancedness: Double) {
        state.withLock {
            $0.expertSum += balancedness
            $0.expertCount += 1
            $0.expertSamples.append(balancedness)
        }
    }

    func struck(_ failure: Failure, worker: String, at: Double) {
        state.withLock { $0.failures.append(Struck(failure: failure, worker: worker, at: at)) }
    }

    func detected(_ worker: String, at: Double, lastReportAt: Double?) {
        state.withLock { state in
            for index in state.failures.indices
            where state.failures[index].worker == worker && state.failures[index].failure.kind == .kill
                && state.failures[index].detectedAt == nil
            {
                state.failures[index].detectedAt = at
                state.failures[index].lastReportAt = lastReportAt
            }
        }
    }

    func failures() -> [Struck] { state.withLock { $0.failures } }
    func timeline() -> [SimulationReport.Point] { state.withLock { $0.timeline } }
    func expertSamples() -> [Double] { state.withLock { $0.expertSamples } }

    /// Closes the interval: its row of the timeline.
    func closeInterval(
        at seconds: Double, context: SimulationContext, shape: ClusterShape, engines: [String: UnitEngine],
        controls: [String: WorkerControl]
    ) -> SimulationReport.Point {
        let interval = context.recorder.closeInterval()
        let totals = context.recorder.totals().counts
        var newest = 1
        var onNewest = 0
        var live = 0
        for unit in shape.units {
            let running = context.placements.running(unit: unit.id)
            let unitNewest = running.values.max() ?? 1
            newest = max(newest, unitNewest)
            for rank in 0..<unit.gpus where controls[unit.workerID(rank: rank)]?.killed == false {
                live += 1
                if (running[rank] ?? 0) == unitNewest { onNewest += 1 }
            }
        }
        return state.withLock { state in
            let point = SimulationReport.Point(
                seconds: seconds, arrived: totals.arrived, finished: totals.finished,
                inFlight: totals.arrived - totals.finished, prefillEfficiency: interval.prefill.efficiency,
                decodeEfficiency: interval.decode.efficiency,
                expertBalancedness: state.expertCount > 0 ? state.expertSum / Double(state.expertCount) : nil,
                placementVersion: newest, workersOnNewest: onNewest, liveWorkers: live, errors: interval.counts.errors)
            state.expertSum = 0
            state.expertCount = 0
            state.timeline.append(point)
            return point
        }
    }
}
