import Hummingbird
import Shared

/// Everything data-plane nodes call (`InternalAPI`), behind one check of the node's credential.
/// Added before the admin session authenticator: nodes do not sign in as admins.
struct InternalRoutes: Sendable {
    let credentials: NodeCredentialCache
    let distribution: ConfigDistribution
    let canon: InternalCanonController
    let cache: AnswerCacheController
    let audit: AuditIngestController
    let usage: UsageController

    func addRoutes(to router: Router<AdminRequestContext>) {
        let enrollment = EnrollmentController(
            credentials: self.credentials, secretDigest: self.distribution.settings.enrollmentSecretDigest)
        enrollment.addRoutes(to: router)
        let group = router.group().add(middleware: NodeAuthenticator(credentials: self.credentials))
            .group(context: NodeContext.self)
        self.distribution.watchController.addRoutes(to: group)
        KeyUsageController(registry: self.distribution.registry).addRoutes(to: group)
        self.canon.addRoutes(to: group)
        self.cache.addRoutes(to: group)
        self.audit.addRoutes(to: group)
        self.usage.addRoutes(to: group)
        enrollment.addReleaseRoute(to: group)
    }
}
