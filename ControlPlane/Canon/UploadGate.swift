import Foundation
import HTTPTypes
import Shared
import Synchronization

/// Bounds how many canon uploads (and node-forwarded updates) of one tenant this control plane
/// reads and parses at once: each holds its body and parsed entries in memory, so a tenant that
/// opens many in parallel would otherwise take memory from everyone. Past the bound: 429.
final class UploadGate: Sendable {
    let maximumPerTenant: Int
    private let active = Mutex<[UUID: Int]>([:])

    init(maximumPerTenant: Int) {
        self.maximumPerTenant = maximumPerTenant
    }

    /// Runs `body` holding one of the tenant's places (the base canon, `nil`, is not bounded:
    /// only operators upload it).
    func withPlace<Result: Sendable>(
        tenant: UUID?, _ body: () async throws -> Result
    ) async throws -> Result {
        guard let tenant else { return try await body() }
        let admitted = self.active.withLock { active in
            guard active[tenant, default: 0] < self.maximumPerTenant else { return false }
            active[tenant, default: 0] += 1
            return true
        }
        guard admitted else { throw Problem.canonUploadsBusy }
        defer {
            self.active.withLock { active in
                let remaining = active[tenant, default: 1] - 1
                active[tenant] = remaining > 0 ? remaining : nil
            }
        }
        return try await body()
    }
}
