import Canon
import Foundation
import Retrieval

/// The canon indexes this node answers from, swapped in whole: a request sees one set from start
/// to end, and a newly published version replaces the old one only once it is fetched, verified
/// and loaded — never half-loaded.
public final class CanonState: Sendable {
    public let base: CanonIndex?
    public let overlays: [UUID: CanonIndex]
    /// The base canon alone, for tenants without an overlay.
    let baseLayers: [CanonLayer]
    let tenantLayers: [UUID: [CanonLayer]]

    init(base: CanonIndex?, overlays: [UUID: CanonIndex]) {
        self.base = base
        self.overlays = overlays
        self.baseLayers = CanonLayer.stack(base: base, overlay: nil)
        self.tenantLayers = overlays.mapValues { CanonLayer.stack(base: base, overlay: $0) }
    }

    static let empty = CanonState(base: nil, overlays: [:])

    /// The layers a tenant searches.
    func layers(for tenant: UUID) -> [CanonLayer] {
        self.tenantLayers[tenant] ?? self.baseLayers
    }

    var artifacts: Set<String> {
        Set(([self.base] + self.overlays.values.map { $0 }).compactMap { $0?.sha256 })
    }
}
