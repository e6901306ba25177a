import FulcrumStore
import Testing

@Suite("DATABASE_URL parsing")
struct DatabaseURLTests {
    @Test func parsesTheUsualForm() throws {
        let url = try DatabaseURL("postgres://fulcrum:s3cr%40t@db.internal:6432/fulcrum?sslmode=require")
        #expect(url.host == "db.internal" && url.port == 6432 && url.database == "fulcrum")
        #expect(url.username == "fulcrum" && url.password == "s3cr@t" && url.tls == .require)
        #expect(url.description == "postgres://fulcrum:***@db.internal:6432/fulcrum")
        #expect(!url.description.contains("s3cr"))
        #expect(try DatabaseURL(url.connectionString) == url)
    }

    @Test func defaultsAndUnixSockets() throws {
        let url = try DatabaseURL("postgresql://postgres@localhost?host=/var/run/postgresql")
        #expect(url.port == 5432 && url.database == "postgres" && url.tls == .prefer)
        #expect(url.socketDirectory == "/var/run/postgresql")
    }

    @Test func decodesPercentEscapesOnceAndTakesIPv6Hosts() throws {
        let url = try DatabaseURL("postgres://us%40er:100%2541@[::1]:5433/my%20db?sslmode=verify-full")
        #expect(url.username == "us@er" && url.password == "100%41" && url.database == "my db")
        #expect(url.host == "::1" && url.port == 5433 && url.tls == .verifyFull)
        #expect(try DatabaseURL(url.connectionString) == url)
    }

    @Test(arguments: [
        "mysql://u@h/db", "not a url", "postgres://h/db", "postgres://u@h/db?sslmode=allow",
        "postgres://u@h:99999/db",
    ])
    func rejectsWhatItCannotUse(_ text: String) {
        #expect(throws: DatabaseURL.ParseError.self) { try DatabaseURL(text) }
    }
}
