import FulcrumCore
import Foundation
import Synchronization

extension MemoryStore: ProtocolHistoryStore {
    public func append(_ batch: TelemetryBatch) async throws {
        state.withLock { state in
            state.samples.append(contentsOf: batch.samples)
            state.windows.append(contentsOf: batch.windows)
            for ack in batch.acks where ack.version > state.acks[ack.worker]?.version ?? 0 {
                state.acks[ack.worker] = ack
            }
            for (id, seen) in batch.lastSeen {
                guard let previous = state.workers[id] else { continue }
                state.workers[id]?.lastSeen = max(seen, previous.lastSeen ?? seen)
            }
            for record in batch.assignments { state.ledger[record.requestID, default: [:]][record.phase] = record }
            for finish in batch.finishes {
                guard let record = state.ledger[finish.requestID]?[finish.phase], record.finishedAt == nil,
                    record.assignedAt <= finish.at
                else { continue }
                state.ledger[finish.requestID]?[finish.phase]?.finishedAt = finish.at
            }
        }
    }

    @discardableResult
    public func pruneTelemetry(before cutoff: Date) async throws -> Int {
        state.withLock { state in
            let before = state.samples.count + state.windows.count
            state.samples.removeAll { $0.receivedAt < cutoff }
            state.windows.removeAll { $0.windowEnd < cutoff }
            var removed = before - state.samples.count - state.windows.count
            for (id, phases) in state.ledger {
                let kept = phases.filter { $0.value.assignedAt >= cutoff }
                removed += phases.count - kept.count
                state.ledger[id] = kept.isEmpty ? nil : kept
            }
            return removed
        }
    }

    public func telemetrySamples(worker: String, limit: Int) async throws -> [TelemetrySample] {
        state.withLock { Array($0.samples.filter { $0.worker == worker }.sorted { ($0.receivedAt, $0.seq) < ($1.receivedAt, $1.seq) }.suffix(limit)) }
    }

    public func expertLoadWindows(unit: String, since: Date) async throws -> [ExpertLoadWindow] {
        state.withLock { $0.windows.filter { $0.unit == unit && $0.windowEnd >= since }.sorted { $0.windowEnd < $1.windowEnd } }
    }
}
