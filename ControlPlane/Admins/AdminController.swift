import Foundation
import Hummingbird
import Shared

/// Tenant admin accounts: an operator creates them for a tenant (`/admin/v1/tenants/{id}/admins`);
/// a tenant's admins list, create, change and remove each other (`/admin/v1/admins`). HTTP only;
/// `AdminStore` has the SQL.
struct AdminController: Sendable {
    let store: AdminStore
    let hasher: GatedHasher

    struct CreateAdmin: Decodable {
        let email: String
        let password: String
        let role: String
    }

    struct UpdateAdmin: Decodable {
        let role: String?
        let status: String?
    }

    struct AdminPage: Encodable {
        let items: [AdminStore.AdminBody]
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        router.group("/admin/v1/tenants", context: OperatorContext.self).post(":id/admins") { request, context in
            let id = try TenantController.tenantID(context.parameters.get("id"))
            let (email, role, hash) = try await self.validate(request, context: context)
            let admin = try await self.store.create(
                email: email, role: role, passwordHash: hash, tenantID: id, operatorID: context.operatorID,
                logger: context.logger)
            return try StrictJSON.response(admin, status: .created)
        }

        let own = router.group("/admin/v1/admins", context: TenantAdminContext.self)
        own.get { _, context in
            try StrictJSON.response(
                AdminPage(items: try await self.store.list(tenantID: context.tenantID, logger: context.logger)))
        }
        own.post { request, context in
            try context.requireAdmin()
            let (email, role, hash) = try await self.validate(request, context: context)
            let admin = try await self.store.create(
                email: email, role: role, passwordHash: hash, tenantID: context.tenantID, logger: context.logger)
            return try StrictJSON.response(admin, status: .created)
        }
        own.patch(":id") { request, context in
            try context.requireAdmin()
            let id = try Self.adminID(context.parameters.get("id"))
            let body = try await StrictJSON.decode(
                UpdateAdmin.self, from: request, context: context, allowedFields: ["role", "status"]
            )
            var errors: [FieldError] = []
            if let role = body.role, AdminRole(rawValue: role) == nil {
                errors.append(FieldError("role", "must be admin or viewer"))
            }
            if let status = body.status, !["active", "disabled"].contains(status) {
                errors.append(FieldError("status", "must be active or disabled"))
            }
            guard errors.isEmpty else { throw Problem.validation(errors) }
            let admin = try await self.store.update(
                id, role: body.role, status: body.status, ifMatch: request.headers[.ifMatch],
                tenantID: context.tenantID, logger: context.logger)
            return try StrictJSON.response(admin, headers: [.eTag: admin.etag])
        }
        own.delete(":id") { _, context in
            try context.requireAdmin()
            let id = try Self.adminID(context.parameters.get("id"))
            guard id != context.adminID else { throw Problem.conflict("You cannot remove your own account.") }
            try await self.store.delete(id, tenantID: context.tenantID, logger: context.logger)
            return Response(status: .noContent)
        }
    }

    static func adminID(_ text: String?) throws -> UUID {
        guard let text, let id = UUID(uuidString: text) else { throw Problem.notFound("No such admin.") }
        return id
    }

    /// Checks the request, then hashes the password (off the event loop) before any database work.
    func validate(_ request: Request, context: some RequestContext) async throws -> (EmailAddress, AdminRole, String) {
        let body = try await StrictJSON.decode(
            CreateAdmin.self, from: request, context: context, allowedFields: ["email", "password", "role"]
        )
        var errors: [FieldError] = []
        let email = EmailAddress(body.email)
        if email == nil { errors.append(FieldError("email", "is not a valid email address")) }
        let role = AdminRole(rawValue: body.role)
        if role == nil { errors.append(FieldError("role", "must be admin or viewer")) }
        for problem in PasswordPolicy.problems(password: body.password, email: body.email) {
            errors.append(FieldError("password", problem))
        }
        guard errors.isEmpty, let email, let role else { throw Problem.validation(errors) }
        return (email, role, try await self.hasher.hash(body.password))
    }
}
