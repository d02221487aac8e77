import HTTPTypes

extension HTTPField.Name {
    /// Correlates a request across logs, responses and problems.
    public static let requestID = Self("X-Request-ID")!
    /// The tenant a caller claims to act for; must match the API key's tenant.
    public static let tenantID = Self("X-Tenant-ID")!
}
