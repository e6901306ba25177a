/// Checks `condition` every `interval` until it holds or `limit` passes, and says whether it held. The one place
/// tests poll for something they cannot be told about (a separate process, a real PostgreSQL, a state the code
/// under test does not announce): the interval is how often to look, not how long anything takes, and the limit is
/// a backstop that a passing run never reaches.
public func waitUntil(
    within limit: Duration, every interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: interval)
    }
    return try await condition()
}
