import Foundation
@testable import SluiceManifest
import SluiceTestSupport
import Testing

/// An agent's PostgreSQL sessions end when they sit in a transaction longer than its
/// `lease_ttl` (a stalled agent then holds no lock the others wait on). The agent's next
/// statement on such a session fails at once, instead of waiting forever on a connection the
/// server has closed, and its next transaction runs on a new connection.
@Suite(.enabled(if: PostgresServer.available, "needs PostgreSQL (apt-get install postgresql)"))
struct PostgresSessionTests {
    @Test func aTransactionLeftIdleIsEndedAndTheNextOneRunsOnANewConnection() throws {
        let server = try PostgresServer.shared()
        var location = PostgresLocation(host: "127.0.0.1", port: server.port, user: server.user, database: try server.createDatabase("idle"),
                                        passwordFile: server.passwordFile, tls: .disable)
        location.idleTransactionTimeoutMillis = 300
        let manifest = try Manifest(.postgres(location))
        do {
            try manifest.write("a stalled transaction") { db in
                #expect(try db.value("SHOW idle_in_transaction_session_timeout") == "300ms")
                usleep(1_200_000)  // as if stopped: past the timeout, the server ends the session
                _ = try db.execute("SELECT 1", [])
            }
            Issue.record("the statement after the timeout succeeded")
        } catch {
            #expect(error.message.contains("the server closed the connection"), "\(error)")
        }
        let one: Int64? = try manifest.read("the next transaction") { db in try db.value("SELECT 1") }
        #expect(one == 1)
    }
}
