import Foundation
import Logging
import SluiceConfig
import SluiceIngest
import SluiceManifest
import SluiceSupport

/// The leases this agent holds on its polled sources: each source is polled by one agent at a
/// time among those sharing the manifest. A lease is claimed before a poll and renewed every
/// `lease_ttl / 3` (while polls run and between them, so that a source stays with its agent);
/// another agent takes it over once it has run out. Every commit of a pass carries the lease's
/// fencing token, and the manifest refuses it once the lease has changed hands.
package final class LeaseKeeper: @unchecked Sendable {  // `held` and `holders` guarded by `lock`
    package let owner: String
    package let ttlNanoseconds: Int64
    private unowned let daemon: AgentRuntime
    private let lock = NSLock()
    private var held: [SourceKey: Int64] = [:]
    private var holders: [SourceKey: LeaseHolder] = [:]
    private let waker = Waker()
    private var loop: BackgroundJob?

    package init(daemon: AgentRuntime, owner: String, ttlNanoseconds: Int64) {
        self.daemon = daemon
        self.owner = owner
        self.ttlNanoseconds = ttlNanoseconds
    }

    package var renewInterval: Int64 { ttlNanoseconds / 3 }

    /// What claiming a lease came to.
    package enum Claim {
        /// This agent holds the lease: the fence for the pass's commits.
        case held(LeaseFence)
        /// Another agent holds it.
        case elsewhere
        /// The manifest could not be asked (the lease, if held, runs out unless renewed soon).
        case failed(String)
    }

    /// Claims (or renews) the lease of `key`.
    package func claim(_ key: SourceKey) -> Claim {
        let logger = daemon.logger.about(client: key.client, source: key.source)
        let token: Int64?
        do {
            token = try daemon.manifest.claimLease(client: key.client, source: key.source, owner: owner, ttlMillis: ttlNanoseconds / 1_000_000)
        } catch {
            logger.warning("Cannot claim the source's lease", metadata: ["error": "\(error.message)"])
            return .failed(error.message)
        }
        let expires = Timestamp.iso8601(nanoseconds: nowNanoseconds() + ttlNanoseconds)
        let before = lock.withLock { () -> Int64? in
            let b = held[key]
            held[key] = token
            if let token { holders[key] = LeaseHolder(owner: owner, token: token, expiresAt: expires, expired: false) }
            return b
        }
        if let token {
            if before == nil {
                // A client's transforms lease changes hands every round: not worth a notice.
                logger.log(level: key.source.hasPrefix("*") ? .debug : .notice, "Took the source's lease", metadata: ["owner": "\(owner)", "token": "\(token)"])
            } else if before != token {
                logger.warning("The source's lease ran out and was taken again; commits with the old token are refused", metadata: [
                    "old_token": "\(before!)", "token": "\(token)",
                ])
            }
            return .held(LeaseFence(client: key.client, source: key.source, owner: owner, token: token))
        }
        if let before {
            logger.error("Lost the source's lease to another agent; its commits are refused", metadata: ["token": "\(before)"])
        }
        return .elsewhere
    }

    /// Renews the claim on a version (never taking it anew: its record removes it).
    private func renewClaim(_ key: SourceKey) {
        guard let fence = fence(key) else { return }
        do {
            if try !daemon.manifest.renewLease(fence, ttlMillis: ttlNanoseconds / 1_000_000), self.fence(key) == fence {
                forget(key)
                daemon.logger.about(client: key.client, source: nil).warning("Lost the claim on a version being transformed; its record will be refused", metadata: [
                    "claim": "\(key.source)", "token": "\(fence.token)",
                ])
            }
        } catch {
            daemon.logger.warning("Cannot renew the claim on a version", metadata: ["claim": "\(key.source)", "error": "\(error.message)"])
        }
    }

    /// Renews a lease taken elsewhere (a claim on a version) until `forget` or `release`.
    package func adopt(_ fence: LeaseFence) {
        lock.withLock { held[SourceKey(client: fence.client, source: fence.source)] = fence.token }
    }

    /// The current fence of `key`, if this agent holds its lease.
    package func fence(_ key: SourceKey) -> LeaseFence? {
        lock.withLock { held[key].map { LeaseFence(client: key.client, source: key.source, owner: owner, token: $0) } }
    }

    /// Who holds `key`'s lease, as last read (for /status and the console).
    package func holder(_ key: SourceKey) -> LeaseHolder? { lock.withLock { holders[key] } }

    package func start() { loop = BackgroundJob(name: "leases") { [self] in run() } }

    private func run() {
        while waker.sleep(nanoseconds: renewInterval) {
            for key in lock.withLock({ Array(held.keys) }) {
                if key.source.hasPrefix(Manifest.versionClaimPrefix) { renewClaim(key) } else { _ = claim(key) }
            }
            refreshHolders()
            // Versions other agents commit are transformed by every agent's workers: each
            // renewal, every client with a mapping is looked at for versions to claim.
            if daemon.manifest.dialect == .postgres {
                for id in daemon.mappingsSnapshot().keys.sorted() { daemon.transforms.enqueue(client: id) }
            }
        }
    }

    /// Reads every lease's holder (one query).
    package func refreshHolders() {
        guard let all = try? daemon.manifest.leaseHolders() else { return }
        lock.withLock {
            holders = [:]
            for lease in all { holders[SourceKey(client: lease.client, source: lease.source)] = lease.holder }
        }
    }

    /// Stops renewing and hands `key`'s lease back (a source removed by a reload).
    package func release(_ key: SourceKey) {
        guard let fence = lock.withLock({ held.removeValue(forKey: key).map { LeaseFence(client: key.client, source: key.source, owner: owner, token: $0) } })
        else { return }
        try? daemon.manifest.releaseLease(fence)
    }

    /// Stops renewing `key`'s lease (a source a reload removed): it runs out by itself.
    package func forget(_ key: SourceKey) {
        lock.withLock { held[key] = nil }
    }

    /// Stops renewing and hands every lease back, so that other agents take the sources at once.
    package func stop() {
        waker.stop()
        _ = loop?.wait(until: Date(timeIntervalSinceNow: 5))
        for key in lock.withLock({ Array(held.keys) }) { release(key) }
    }
}
